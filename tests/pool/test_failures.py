"""A decision the database did not record must not stand in the claim store: after a failed write (a lost connection,
a pool timeout, a locked SQLite file) the same step can be taken again, by the same party or another. And a claim
left behind by a crashed process does not keep a request open forever. In memory and in Redis."""

from __future__ import annotations

import inspect
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
import redis.asyncio as aioredis

from conftest import REDIS_URL, RunningServer, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings
from pool import claim, offers, requests, sweeper
from pool.claims import ClaimStore, MemoryClaimStore
from pool.claims.redis import RedisClaimStore
from pool.context import PoolContext
from pool.models import PoolRequest, RequestStatus
from pool.sweeper import STALE_CLAIM_S, sweep

from support import available_therapist, pool_rows, terms


class DatabaseDown(OSError):
    """What the driver raises when the connection drops mid-write (not an application error)."""


class FailingOnce(claim.Recorder):
    """Test-only recorder whose first write fails the way a lost database connection does."""

    def __init__(self) -> None:
        self.failed = False

    async def record(self, ctx: PoolContext, request_id: int, round: int, therapist_id: int) -> PoolRequest:
        if not self.failed:
            self.failed = True
            raise DatabaseDown("connection lost")
        return await super().record(ctx, request_id, round, therapist_id)


def fail_once(real: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a database step (async or not) so that its first call fails like a lost connection."""
    state = {"failed": False}

    def first_fails() -> None:
        if not state["failed"]:
            state["failed"] = True
            raise DatabaseDown("connection lost")

    async def step(*args: Any, **kwargs: Any) -> Any:
        first_fails()
        return await real(*args, **kwargs)

    def sync_step(*args: Any, **kwargs: Any) -> Any:
        first_fails()
        return real(*args, **kwargs)

    return step if inspect.iscoroutinefunction(real) else sync_step


@pytest.fixture
async def redis_server(make_settings: Callable[..., Settings], clock: FrozenClock,
                       redis_prefix: str) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix), clock=clock)
    try:
        yield running
    finally:
        await running.runner.cleanup()


async def a_failed_accept_frees_the_round(server: RunningServer, users: Users, sockets,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, t1 = await available_therapist(server, users, sockets, "t1")
    t2_user, t2 = await available_therapist(server, users, sockets, "t2")
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    monkeypatch.setattr(claim, "RECORDER", FailingOnce())
    before = await pool_rows(server)

    failed = await t1.call("pool.accept", {"request_id": request_id})
    assert failed["error"]["code"] == "internal"
    assert await pool_rows(server) == before
    won = await t2.call("pool.accept", {"request_id": request_id})
    assert won["ok"], won
    offered = await client.next("pool.request_updated", lambda d: d["request"]["status"] == "offered")
    assert offered["request"]["offer"]["therapist"]["id"] == t2_user.id

    other = await sockets(server, await users.client())
    second = (await other.call("pool.request", {"reason": "later"}))["request"]["id"]
    assert (await t1.call("pool.accept", {"request_id": second}))["ok"], "the failed accept left t1 free"


async def test_a_failed_accept_frees_the_round(server: RunningServer, users: Users, sockets,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    await a_failed_accept_frees_the_round(server, users, sockets, monkeypatch)


async def test_a_failed_accept_frees_the_round_on_redis(redis_server: RunningServer, http: aiohttp.ClientSession,
                                                        sockets, monkeypatch: pytest.MonkeyPatch) -> None:
    await a_failed_accept_frees_the_round(redis_server, Users(redis_server, http), sockets, monkeypatch)


async def offered_request(server: RunningServer, users: Users, sockets) -> tuple[int, Any, Any]:
    """A request offered to a therapist: (its id, the client's socket, the therapist's socket)."""
    _, therapist = await available_therapist(server, users, sockets, "therapist")
    client = await sockets(server, await users.client(), "client")
    request_id = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    assert (await therapist.call("pool.accept", {"request_id": request_id}))["ok"]
    await client.next("pool.request_updated", lambda d: d["request"]["status"] == "offered")
    return request_id, client, therapist


async def test_a_decline_that_failed_can_be_repeated(server: RunningServer, users: Users, sockets,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    request_id, client, therapist = await offered_request(server, users, sockets)
    monkeypatch.setattr(offers, "move", fail_once(offers.move))
    before = await pool_rows(server)
    failed = await client.call("pool.respond", {"request_id": request_id, "accept": False})
    assert failed["error"]["code"] == "internal"
    assert await pool_rows(server) == before
    again = await client.call("pool.respond", {"request_id": request_id, "accept": False})
    assert again["ok"] and again["request"]["status"] == "open", again
    assert (await therapist.next("pool.offer_updated"))["outcome"] == "declined"


async def test_an_acceptance_that_failed_can_be_repeated(redis_server: RunningServer, http: aiohttp.ClientSession,
                                                         sockets, monkeypatch: pytest.MonkeyPatch) -> None:
    server = redis_server
    request_id, client, _ = await offered_request(server, Users(server, http), sockets)
    monkeypatch.setattr(offers, "record_consent", fail_once(offers.record_consent))
    before = await pool_rows(server)
    failed = await client.call("pool.respond", {"request_id": request_id, "accept": True, **terms(server)})
    assert failed["error"]["code"] == "internal"
    assert await pool_rows(server) == before
    again = await client.call("pool.respond", {"request_id": request_id, "accept": True, **terms(server)})
    assert again["ok"] and again["call"]["client_id"], again


async def test_a_withdrawal_that_failed_leaves_the_request_takeable(server: RunningServer, users: Users, sockets,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    monkeypatch.setattr(requests, "move", fail_once(requests.move))
    before = await pool_rows(server)
    assert (await client.call("pool.cancel", {"request_id": request_id}))["error"]["code"] == "internal"
    assert await pool_rows(server) == before
    assert (await therapist.call("pool.accept", {"request_id": request_id}))["ok"], "the round was given back"


async def test_an_expiry_that_failed_is_retried_by_the_next_sweep(server: RunningServer, users: Users, sockets,
                                                                   clock: FrozenClock,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    clock.advance(server.services.settings.request_ttl_s + 1)
    monkeypatch.setattr(sweeper, "move", fail_once(sweeper.move))
    assert (await sweep(server.services.pool))["expired"] == 0
    assert (await sweep(server.services.pool))["expired"] == 1
    expired = await client.next("pool.request_updated", lambda d: d["request"]["status"] == "expired")
    assert expired["request"]["id"] == request_id and expired["request"]["crisis_resources"]


async def test_a_claim_left_by_a_crashed_process_does_not_keep_the_request_open(
    server: RunningServer, users: Users, sockets, clock: FrozenClock
) -> None:
    """The claim store says a therapist took the round, the database never heard of it: the database decides."""
    ctx = server.services.pool
    client = await sockets(server, await users.client())
    first = (await client.call("pool.request", {"reason": "now"}))["request"]["id"]
    await ctx.claims.claim_round(first, 0, 999_999, ctx.round_ttl_s, ctx.offer_hold_s)
    withdrawn = await client.call("pool.cancel", {"request_id": first})
    assert withdrawn["ok"] and withdrawn["request"]["status"] == "cancelled", withdrawn

    second = (await client.call("pool.request", {"reason": "again"}))["request"]["id"]
    await ctx.claims.claim_round(second, 0, 999_998, ctx.round_ttl_s, ctx.offer_hold_s)
    clock.advance(server.services.settings.request_ttl_s + 1)
    assert (await sweep(ctx))["expired"] == 0, "a holder may still be recording: wait a while"
    clock.advance(STALE_CLAIM_S)
    assert (await sweep(ctx))["expired"] == 1
    async with server.services.db.session() as session:
        req = await session.get(PoolRequest, second)
    assert req is not None and req.status is RequestStatus.expired


async def undo_resolution(store: ClaimStore) -> None:
    assert await store.resolve_round(7, 0, "declined", 60)
    await store.unresolve_round(7, 0, "timed_out")
    assert not await store.resolve_round(7, 0, "accepted", 60), "only its own resolution is undone"
    await store.unresolve_round(7, 0, "declined")
    assert await store.resolve_round(7, 0, "accepted", 60)
    assert await store.resolve_round(7, 1, "declined", 60), "each round is resolved on its own"


async def test_a_resolution_can_be_undone_by_its_owner_only_in_memory(clock: FrozenClock) -> None:
    await undo_resolution(MemoryClaimStore(clock))


async def test_a_resolution_can_be_undone_by_its_owner_only_on_redis(redis_prefix: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        await undo_resolution(RedisClaimStore(client, redis_prefix))
    finally:
        await client.aclose()
