"""Bad input and abuse: each gets an error ack with its exact code and changes nothing else; one flooding connection
never keeps the others from being answered."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
from sqlalchemy import select

from accounts.models import TherapistProfile
from conftest import RunningServer, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings
from pool.sweeper import sweep

from support import available_therapist, pool_rows, terms


async def test_accepting_an_expired_request_is_refused_before_any_sweep(
    server: RunningServer, users: Users, sockets, clock: FrozenClock
) -> None:
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "now"}))["request"]
    clock.advance(server.services.settings.request_ttl_s)  # exactly at its expiry
    before = await pool_rows(server)
    refused = await therapist.call("pool.accept", {"request_id": request["id"]})
    assert refused["error"]["code"] == "expired"
    assert await pool_rows(server) == before
    assert (await sweep(server.services.pool))["expired"] == 1, "the refused accept left the round to the sweeper"


async def test_a_request_that_does_not_exist_is_not_found(server: RunningServer, users: Users, sockets) -> None:
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    await client.call("pool.request", {"reason": "a real one"})
    before = await pool_rows(server)
    assert (await therapist.call("pool.accept", {"request_id": 999_999}))["error"]["code"] == "not_found"
    assert (await client.call("pool.cancel", {"request_id": 999_999}))["error"]["code"] == "not_found"
    assert (await client.call("pool.respond", {"request_id": 999_999, "accept": False}))["error"]["code"] == "not_found"
    assert await pool_rows(server) == before


async def test_an_unavailable_therapist_cannot_accept(server: RunningServer, users: Users, sockets) -> None:
    t_user, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    assert (await therapist.call("pool.set_availability", {"available": False}))["ok"]
    before = await pool_rows(server)
    assert (await therapist.call("pool.accept", {"request_id": request_id}))["error"]["code"] == "not_available"
    assert await pool_rows(server) == before
    async with server.services.db.session() as session:
        assert (await session.get(TherapistProfile, t_user.id)).available is False


async def test_a_replayed_accept_by_the_winner_changes_nothing(server: RunningServer, users: Users, sockets) -> None:
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    won = await therapist.call("pool.accept", {"request_id": request_id})
    assert won["ok"]
    before = await pool_rows(server)
    replays = await asyncio.gather(*(therapist.call("pool.accept", {"request_id": request_id}) for _ in range(3)))
    assert [r["error"]["code"] for r in replays] == ["taken"] * 3
    await client.next("pool.request_updated", lambda d: d["request"]["status"] == "offered")
    assert (await therapist.call("pool.accept", {"request_id": request_id}))["error"]["code"] == "taken"
    assert await pool_rows(server) == before
    assert (await therapist.call("pool.snapshot"))["offers"][0]["expires_at"] == won["offer"]["expires_at"]


#: (event, payload, code) for the client's and the therapist's pool events: wrong types, missing fields, extra
#: fields, out-of-range ids, and payloads that are not one object.
CLIENT_CASES: list[tuple[str, Any, str]] = [
    ("pool.request", {}, "missing_field"),
    ("pool.request", {"reason": 5}, "invalid"),
    ("pool.request", {"reason": "   "}, "missing_field"),
    ("pool.request", {"reason": "x" * 501}, "too_long"),
    ("pool.request", {"reason": "x", "notes": ["a"]}, "invalid"),
    ("pool.request", {"reason": "x", "expertise": "anxiety"}, "invalid"),
    ("pool.request", {"reason": "x", "expertise": ["a"] * 6}, "too_long"),
    ("pool.request", {"reason": "x", "role": "admin"}, "unknown_field"),
    ("pool.request", ["reason"], "invalid_payload"),
    ("pool.request", "help", "invalid_payload"),
    ("pool.cancel", {}, "missing_field"),
    ("pool.cancel", {"request_id": "1"}, "invalid"),
    ("pool.cancel", {"request_id": 0}, "invalid"),
    ("pool.cancel", {"request_id": True}, "invalid"),
    ("pool.cancel", {"request_id": 2**63}, "invalid"),
    ("pool.cancel", 1, "invalid_payload"),
    ("pool.respond", {"request_id": 1}, "missing_field"),
    ("pool.respond", {"request_id": 1, "accept": "yes"}, "invalid"),
    ("pool.respond", {"request_id": 1.5, "accept": False}, "invalid"),
    ("pool.respond", {"request_id": 1, "accept": False, "extra": 1}, "unknown_field"),
    ("pool.state", {"request_id": 1}, "unknown_field"),
    ("pool.state", [], "invalid_payload"),
]
THERAPIST_CASES: list[tuple[str, Any, str]] = [
    ("pool.accept", {}, "missing_field"),
    ("pool.accept", {"request_id": "abc"}, "invalid"),
    ("pool.accept", {"request_id": -1}, "invalid"),
    ("pool.accept", {"request_id": 2**70}, "invalid"),
    ("pool.accept", {"request_id": None}, "missing_field"),
    ("pool.accept", {"request_id": 1, "therapist_id": 2}, "unknown_field"),
    ("pool.accept", [1], "invalid_payload"),
    ("pool.snapshot", {"all": True}, "unknown_field"),
    ("pool.snapshot", "all", "invalid_payload"),
    ("pool.set_availability", {}, "missing_field"),
    ("pool.set_availability", {"available": "yes"}, "invalid"),
    ("pool.set_availability", {"available": 1}, "invalid"),
    ("pool.set_availability", {"available": False, "expertise": []}, "unknown_field"),
]


async def test_malformed_payloads_get_their_code_and_change_nothing(server: RunningServer, users: Users, sockets) -> None:
    t_user, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "the one real request"}))["request"]["id"]
    before = await pool_rows(server)
    for sock, cases in ((client, CLIENT_CASES), (therapist, THERAPIST_CASES)):
        for event, payload, code in cases:
            ack = await sock.call(event, payload)
            assert not ack["ok"] and ack["error"]["code"] == code, f"{event} {payload!r}: {ack}"
    assert await pool_rows(server) == before
    async with server.services.db.session() as session:
        assert (await session.get(TherapistProfile, t_user.id)).available is True
    assert (await therapist.call("pool.accept", {"request_id": request_id}))["ok"], "the pool still works"
    assert (await client.call("pool.respond", {"request_id": request_id, "accept": True, **terms(server)}))["ok"]


async def test_a_client_cannot_accept_and_a_therapist_cannot_ask(server: RunningServer, users: Users, sockets) -> None:
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    before = await pool_rows(server)
    assert (await client.call("pool.accept", {"request_id": request_id}))["error"]["code"] == "forbidden"
    assert (await therapist.call("pool.request", {"reason": "me"}))["error"]["code"] == "forbidden"
    assert (await therapist.call("pool.cancel", {"request_id": request_id}))["error"]["code"] == "forbidden"
    assert await pool_rows(server) == before


@pytest.fixture
async def tight_server(make_settings: Callable[..., Settings], clock: FrozenClock) -> AsyncIterator[RunningServer]:
    """A server whose per-connection throttle allows 5 events at once, refilled at one every ten seconds."""
    running = await start_server(make_settings(socket_event_burst=5, socket_events_per_s=0.1), clock=clock)
    try:
        yield running
    finally:
        await running.runner.cleanup()


async def test_a_flooding_connection_is_throttled_and_the_others_are_still_answered(
    tight_server: RunningServer, http: aiohttp.ClientSession, sockets
) -> None:
    server = tight_server
    users = Users(server, http)
    flooder_user = await users.therapist()
    flooder, other = await sockets(server, flooder_user, "flooder"), await sockets(server, await users.therapist(), "other")
    before = await pool_rows(server)

    flood = asyncio.gather(*(flooder.call("pool.set_availability", {"available": True}) for _ in range(30)),
                           *(flooder.call("no.such.event") for _ in range(10)))
    answered = await other.call("pool.snapshot")
    acks = await flood
    assert answered["ok"] and answered["busy"] is None, "the other connection was answered during the flood"
    codes = [a.get("error", {}).get("code") for a in acks]
    assert codes.count("rate_limited") >= len(acks) - 6, codes  # the burst (and a refill on a very slow machine)
    assert all(a["ok"] or a["error"]["code"] in ("rate_limited", "unknown_event") for a in acks)
    assert all(a["error"]["details"]["retry_after"] > 0 for a in acks if not a["ok"] and a["error"]["code"] == "rate_limited")
    assert (await other.call("pool.snapshot"))["ok"]
    assert await pool_rows(server) == before
    async with server.services.db.session() as session:
        rows = (await session.execute(select(TherapistProfile.user_id, TherapistProfile.available))).all()
    assert dict(rows)[flooder_user.id] is True, "the events let through did what they say, no more"
