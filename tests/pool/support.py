"""Small helpers shared by the pool tests: an available therapist, the terms of an acceptance, and the pool's rows
(to assert that a refused event changed nothing)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from sqlalchemy import select

from calls.models import Call
from conftest import RunningServer, Sock, User, Users
from pool.models import PoolOffer, PoolRequest


def terms(server: RunningServer, *, recording_consent: bool = True) -> dict[str, Any]:
    """What `pool.respond` needs beside `request_id` and `accept: true`."""
    return {"accept_terms": True, "terms_version": server.services.settings.terms_version,
            "recording_consent": recording_consent}


async def available_therapist(server: RunningServer, users: Users, sockets: Any, name: str = "",
                              **extra: Any) -> tuple[User, Sock]:
    """An approved therapist, connected and available (their dashboard is in the pool)."""
    user = await users.therapist(**extra)
    sock = await sockets(server, user, name)
    ack = await sock.call("pool.set_availability", {"available": True})
    assert ack["ok"], ack
    return user, sock


async def pool_rows(server: RunningServer) -> dict[str, list[tuple[Any, ...]]]:
    """Every request, offer and call as plain values."""
    async with server.services.db.session() as session:
        requests = (await session.execute(select(
            PoolRequest.id, PoolRequest.status, PoolRequest.round, PoolRequest.offered_to, PoolRequest.offer_expires_at,
            PoolRequest.call_id, PoolRequest.closed_at).order_by(PoolRequest.id))).all()
        offers = (await session.execute(select(
            PoolOffer.request_id, PoolOffer.round, PoolOffer.therapist_id, PoolOffer.outcome).order_by(PoolOffer.id))).all()
        calls = (await session.execute(select(Call.id, Call.status).order_by(Call.id))).all()
    return {"requests": [tuple(r) for r in requests], "offers": [tuple(o) for o in offers],
            "calls": [tuple(c) for c in calls]}


async def round_trip(sock: Sock) -> None:
    """Once this returns, every event the server sent this connection before it has arrived (one ordered stream)."""
    ack = await sock.call("session.ping")
    assert ack["ok"], ack


def added_ids(sock: Sock) -> list[int]:
    return [data["request"]["id"] for data in sock.received("pool.request_added")]


def from_now(sock: Sock, event: str) -> Callable[..., Awaitable[Any]]:
    """Mark now; `await wait(predicate)` later returns the first `event` received after the mark that satisfies it."""
    mark = len(sock.received(event))

    async def wait(predicate: Callable[[Any], bool] = lambda _: True) -> Any:
        return await sock.next(event, lambda d: any(d is x for x in sock.received(event)[mark:]) and predicate(d))

    return wait
