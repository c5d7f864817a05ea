"""E-mail verification and password reset through the outbox; links carry the token in the fragment only."""

from __future__ import annotations

import re

import aiohttp

from conftest import PASSWORD, RunningServer, Users, wait_for
from core.clock import FrozenClock
from messaging.outbox import OutboxMessage, OutboxStatus, messages_for


async def outbox(server: RunningServer, email: str, kind: str) -> list:
    async with server.services.db.session() as session:
        return await messages_for(session, server.services.keyring, email, kind)


def token_from(body: str, path: str) -> str:
    match = re.search(rf"/{path}#token=([A-Za-z0-9_-]+)", body)
    assert match, "the link carries the token in the URL fragment"
    return match.group(1)


async def test_registration_sends_a_verification_link_that_works_once(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    [mail] = await outbox(server, client.email, "verify_email")
    token = token_from(mail.body, "verify-email")
    assert "?" not in mail.body.split("verify-email")[1].split()[0], "no query string for a server log to keep"

    async with http.post(f"{server.url}/api/auth/verify-email", json={"token": token}) as resp:
        assert resp.status == 200
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert (await resp.json())["email_verified"] is True
    async with http.post(f"{server.url}/api/auth/verify-email", json={"token": token}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_token"


async def test_outbox_bodies_are_encrypted_and_delivered(server: RunningServer, users: Users) -> None:
    client = await users.client()

    async def delivered() -> bool:
        async with server.services.db.session() as session:
            rows = (await session.execute(OutboxMessage.__table__.select())).all()
        return bool(rows) and all(r.status == OutboxStatus.sent for r in rows)

    await wait_for(delivered)
    async with server.services.db.session() as session:
        raw = (await session.execute(OutboxMessage.__table__.select())).first()
    assert raw is not None and "verify-email" not in raw.body_enc and raw.body_enc.startswith("v1.")
    assert client.email == raw.recipient


async def test_password_reset_sets_a_new_password_and_signs_out_everywhere(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": client.email}) as resp:
        assert resp.status == 202
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": "nobody@example.org"}) as resp:
        assert resp.status == 202, "same answer for unknown addresses"
    [mail] = await outbox(server, client.email, "reset_password")
    token = token_from(mail.body, "reset-password")

    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json={"token": token, "password": "short"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "weak_password"
    new_password = "a brand new passphrase"
    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json={"token": token, "password": new_password}) as resp:
        assert resp.status == 204
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 401, "old sessions end"
    async with http.post(f"{server.url}/api/auth/signin", json={"email": client.email, "password": PASSWORD}) as resp:
        assert resp.status == 401
    async with http.post(f"{server.url}/api/auth/signin", json={"email": client.email, "password": new_password}) as resp:
        assert resp.status == 200
    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json={"token": token, "password": "yet another one!"}) as resp:
        assert resp.status == 400, "a reset link works once"


async def test_reset_link_expires(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": client.email}) as resp:
        assert resp.status == 202
    [mail] = await outbox(server, client.email, "reset_password")
    clock.advance(3601)
    body = {"token": token_from(mail.body, "reset-password"), "password": "a brand new passphrase"}
    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json=body) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_token"


async def test_secret_links_never_reach_the_logs(server: RunningServer, users: Users, http: aiohttp.ClientSession, captured_logs) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": client.email}) as resp:
        assert resp.status == 202
    await wait_for(lambda: "message.delivered_to_log" in captured_logs.getvalue())
    for kind, path in (("verify_email", "verify-email"), ("reset_password", "reset-password")):
        [mail] = await outbox(server, client.email, kind)
        assert token_from(mail.body, path) not in captured_logs.getvalue()
