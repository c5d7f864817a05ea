"""A therapist holding an offer or in a call is out of the pool: their dashboards get no new requests, their snapshot
says so, and they are back (with the requests that came meanwhile) as soon as the offer or the call ends. In one
process and across processes sharing Redis."""

from __future__ import annotations

from typing import AsyncIterator, Callable

import aiohttp
import pytest

from conftest import REDIS_URL, RunningServer, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings

from support import added_ids, available_therapist, from_now, pool_rows, round_trip, terms


async def test_a_therapist_in_a_call_gets_no_requests_until_it_ends(server: RunningServer, users: Users, sockets) -> None:
    t1_user, t1 = await available_therapist(server, users, sockets, "t1")
    _, t2 = await available_therapist(server, users, sockets, "t2")
    client = await sockets(server, await users.client(), "c1")
    first = (await client.call("pool.request", {"reason": "first"}))["request"]["id"]
    assert (await t1.call("pool.accept", {"request_id": first}))["ok"]
    held = await t1.next("pool.snapshot", lambda s: s["busy"] == "offer")
    assert held["requests"] == [] and [o["request"]["id"] for o in held["offers"]] == [first]

    other = await sockets(server, await users.client(), "c2")
    second = (await other.call("pool.request", {"reason": "second"}))["request"]["id"]
    await t2.next("pool.request_added", lambda d: d["request"]["id"] == second)
    await round_trip(t1)
    assert second not in added_ids(t1), "a therapist holding an offer is not shown new requests"

    call = (await client.call("pool.respond", {"request_id": first, "accept": True, **terms(server)}))["call"]
    third_client = await sockets(server, await users.client(), "c3")
    third = (await third_client.call("pool.request", {"reason": "third"}))["request"]["id"]
    await t2.next("pool.request_added", lambda d: d["request"]["id"] == third)
    await round_trip(t1)
    assert third not in added_ids(t1), "a therapist in a call is not shown new requests"
    snapshot = await t1.call("pool.snapshot")
    assert snapshot["busy"] == "call" and snapshot["requests"] == [] and snapshot["available"] is True

    before = await pool_rows(server)
    refused = await t1.call("pool.accept", {"request_id": second})
    assert refused["error"]["code"] == "busy"
    assert await pool_rows(server) == before

    snapshot_pushed = from_now(t1, "pool.snapshot")
    assert (await t1.call("call.hangup", {"call_id": call["id"]}))["ok"]
    back = await snapshot_pushed(lambda s: s["busy"] is None)
    assert sorted(r["id"] for r in back["requests"]) == sorted([second, third]), "what came meanwhile is shown"
    fourth_client = await sockets(server, await users.client(), "c4")
    fourth = (await fourth_client.call("pool.request", {"reason": "fourth"}))["request"]["id"]
    await t1.next("pool.request_added", lambda d: d["request"]["id"] == fourth)
    assert (await t1.call("pool.accept", {"request_id": fourth}))["ok"]
    assert t1_user.id == (await fourth_client.next(
        "pool.request_updated", lambda d: d["request"]["status"] == "offered"))["request"]["offer"]["therapist"]["id"]


async def test_a_declined_therapist_is_back_in_the_pool_for_other_requests(
    server: RunningServer, users: Users, sockets
) -> None:
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    first = (await client.call("pool.request", {"reason": "first"}))["request"]["id"]
    assert (await therapist.call("pool.accept", {"request_id": first}))["ok"]
    await therapist.next("pool.snapshot", lambda s: s["busy"] == "offer")
    snapshot_pushed = from_now(therapist, "pool.snapshot")
    assert (await client.call("pool.respond", {"request_id": first, "accept": False}))["ok"]
    back = await snapshot_pushed(lambda s: s["busy"] is None)
    assert back["requests"] == [] and back["offers"] == [], "the declined request is not shown to them again"
    other = await sockets(server, await users.client())
    second = (await other.call("pool.request", {"reason": "second"}))["request"]["id"]
    await therapist.next("pool.request_added", lambda d: d["request"]["id"] == second)


async def test_a_therapist_in_an_admins_test_call_is_out_of_the_pool(
    server: RunningServer, users: Users, sockets, http: aiohttp.ClientSession
) -> None:
    t_user, therapist = await available_therapist(server, users, sockets)
    admin = await users.admin()
    async with http.post(f"{server.url}/api/admin/test-calls", headers=admin.headers,
                         json={"therapist_id": t_user.id}) as resp:
        assert resp.status == 201
    assert (await therapist.next("pool.snapshot", lambda s: s["busy"] == "call"))["requests"] == []
    client = await sockets(server, await users.client())
    asked = await client.call("pool.request", {"reason": "now"})
    request_id = asked["request"]["id"]
    assert asked["request"]["therapists_online"] == 0, "a therapist in a call cannot come"
    assert asked["request"].get("crisis_resources"), "so the client is shown crisis resources"
    await round_trip(therapist)
    assert request_id not in added_ids(therapist), "a therapist in a test call is not shown new requests"


@pytest.fixture
async def two_processes(make_settings: Callable[..., Settings], clock: FrozenClock,
                        redis_prefix: str) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Two server processes' worth of services in this process, sharing one database and Redis."""
    settings = make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix)
    first = await start_server(settings, clock=clock)
    try:
        second = await start_server(settings, clock=clock)
        try:
            yield first, second
        finally:
            await second.runner.cleanup()
    finally:
        await first.runner.cleanup()


async def test_busy_dashboards_leave_and_rejoin_the_pool_in_every_process(
    two_processes: tuple[RunningServer, RunningServer], http: aiohttp.ClientSession, sockets
) -> None:
    one, two = two_processes
    users = Users(one, http)
    t_user = await users.therapist()
    here, there = await sockets(one, t_user, "tab on one"), await sockets(two, t_user, "tab on two")
    assert (await here.call("pool.set_availability", {"available": True}))["ok"]
    _, witness = await available_therapist(two, users, sockets, "witness on two")
    client = await sockets(two, await users.client(), "client on two")
    first = (await client.call("pool.request", {"reason": "first"}))["request"]["id"]
    await there.next("pool.request_added", lambda d: d["request"]["id"] == first)

    assert (await here.call("pool.accept", {"request_id": first}))["ok"]
    # the tab on the other process left the pool before the client (on that process) was shown the offer
    await client.next("pool.request_updated", lambda d: d["request"]["status"] == "offered")
    other = await sockets(one, await users.client(), "other client on one")
    second = (await other.call("pool.request", {"reason": "second"}))["request"]["id"]
    await witness.next("pool.request_added", lambda d: d["request"]["id"] == second)
    await round_trip(there)
    assert second not in added_ids(there) and second not in added_ids(here)

    # the client on process two declines: the tab on process one rejoins before anything process two sends next
    assert (await client.call("pool.respond", {"request_id": first, "accept": False}))["ok"]
    third_client = await sockets(two, await users.client(), "third client on two")
    third = (await third_client.call("pool.request", {"reason": "third"}))["request"]["id"]
    for tab in (here, there):
        await tab.next("pool.request_added", lambda d: d["request"]["id"] == third)
