"""Helpers shared by the accounts tests: one call to the REST API, and reads of what the server stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from conftest import RunningServer, User, Users
from core.audit import AuditEvent
from messaging.outbox import OutgoingMessage, messages_for


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes
    headers: Any

    @property
    def code(self) -> str | None:
        return self.body["error"]["code"] if isinstance(self.body, dict) and "error" in self.body else None


class Api:
    """`await api("PATCH", "/api/me", user, json={...})` → `Reply`; the JSON body is parsed when there is one."""

    def __init__(self, server: RunningServer, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http

    async def __call__(self, method: str, path: str, user: User | None = None, **kwargs: Any) -> Reply:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.update(user.headers)
        async with self.http.request(method, f"{self.server.url}{path}", headers=headers, **kwargs) as resp:
            raw = await resp.read()
            body = await resp.json() if resp.content_type == "application/json" else None
            return Reply(resp.status, body, raw, resp.headers)

    async def me(self, user: User) -> dict[str, Any]:
        reply = await self("GET", "/api/me", user)
        assert reply.status == 200, reply.body
        return reply.body


@pytest.fixture
def api(server: RunningServer, http: aiohttp.ClientSession) -> Api:
    return Api(server, http)


def expect(reply: Reply, status: int, code: str | None = None) -> Reply:
    assert reply.status == status, (reply.status, reply.body)
    if code is not None:
        assert reply.code == code, reply.body
        assert reply.body["error"]["message"]
    return reply


async def audit_events(server: RunningServer, action: str, subject_id: object | None = None) -> list[AuditEvent]:
    async with server.services.db.session() as session:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        if subject_id is not None:
            query = query.where(AuditEvent.subject_id == str(subject_id))
        return list((await session.scalars(query)).all())


async def outbox(server: RunningServer, recipient: str, kind: str | None = None) -> list[OutgoingMessage]:
    svc = server.services
    async with svc.db.session() as session:
        return await messages_for(session, svc.keyring, recipient, kind)


async def minor(users: Users, server: RunningServer, age: int = 15, **extra: Any) -> User:
    today = server.services.clock.now().date()
    return await users.client(date_of_birth=today.replace(year=today.year - age, month=6, day=1).isoformat(), **extra)


__all__ = ["Api", "Reply", "api", "audit_events", "expect", "minor", "outbox"]
