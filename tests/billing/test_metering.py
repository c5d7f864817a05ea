"""Per-minute charging of quick-connect calls: only while both members are present, each minute in advance, the
therapist credited minus commission, warnings before the paid time runs out, the call ended (never the wallet
overdrawn) when the money runs out, settled once even across a restart; test calls free; a minimum balance to ask."""

from __future__ import annotations

from typing import Any, Callable

import aiohttp
from sqlalchemy import func, select

from billing import metering
from billing.ledger import PLATFORM, available, pending, wallet
from billing.models import CallMeter, LedgerTransaction
from billing_support import (LocalStripe, balance_of, billing, billing_settings, credit, join_both,  # noqa: F401
                             ledger_is_consistent, local_stripe, media_connected, people, quick_connect_call, tick)
from calls.models import CallKind
from conftest import RunningServer, Users, start_server, wait_for
from core.clock import FrozenClock
from core.settings import Settings
from signalling.events.calls import sweep_calls


async def meter(server: RunningServer, call_id: int) -> CallMeter | None:
    async with server.services.db.session() as session:
        return await session.get(CallMeter, call_id)


async def charges(server: RunningServer, call_id: int) -> int:
    async with server.services.db.session() as session:
        return int(await session.scalar(select(func.count(LedgerTransaction.id)).where(
            LedgerTransaction.call_id == call_id, LedgerTransaction.kind == "call_charge")) or 0)


async def test_each_minute_is_charged_at_its_start_and_settled_when_the_call_ends(
        billing: RunningServer, people: Users, clock: FrozenClock, sockets) -> None:
    therapist, client = await people.therapist(), await people.client()
    await credit(billing, client, 1000)
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await join_both(sockets, billing, therapist, client, call_id)

    assert await balance_of(billing, wallet(client.id)) == 900, "the first minute is paid as soon as both are in"
    assert (await c_sock.next("billing.call"))["minutes_charged"] == 1
    assert await balance_of(billing, pending(therapist.id)) == 75 and await balance_of(billing, PLATFORM) >= 25
    clock.advance(59)
    await tick(billing)
    assert await charges(billing, call_id) == 1
    clock.advance(1)
    await tick(billing)
    assert await charges(billing, call_id) == 2 and await balance_of(billing, wallet(client.id)) == 800
    assert (await c_sock.next("billing.balance", lambda d: d["balance_pence"] == 800)) == {"balance_pence": 800}
    assert c_sock.received("billing.low_balance") == [] and t_sock.received("billing.balance") == []

    clock.advance(30)
    assert (await c_sock.call("call.hangup", {"call_id": call_id}))["ok"]
    await wait_for(lambda: meter(billing, call_id), timeout=5)
    settled = await wait_for(_settled(billing, call_id))
    assert settled.minutes_charged == 2 and settled.billable_ms == 150_000 - 60_000  # 90 s in the call
    assert await balance_of(billing, pending(therapist.id)) == 0
    assert await balance_of(billing, available(therapist.id)) == 150
    summary = await metering.call_charges(billing.services.billing, call_id)
    assert summary is not None and summary["charged_pence"] == 200 and summary["therapist_pence"] == 150
    await ledger_is_consistent(billing)


def _settled(server: RunningServer, call_id: int) -> Callable[[], Any]:
    async def check() -> CallMeter | None:
        row = await meter(server, call_id)
        return row if row is not None and row.status.value == "settled" else None

    return check


async def test_time_away_is_not_charged_and_rounding_is_per_minute_of_total_billable_time(
        billing: RunningServer, people: Users, clock: FrozenClock, sockets) -> None:
    therapist, client = await people.therapist(), await people.client()
    await credit(billing, client, 1000)
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await join_both(sockets, billing, therapist, client, call_id)
    clock.advance(30)
    await c_sock.close()  # the client's network drops
    await wait_for(lambda: _stopped(billing, call_id))
    clock.advance(80)  # away for 80 s (within the rejoin grace period)
    await tick(billing)
    assert await charges(billing, call_id) == 1

    c_back = await sockets(billing, client, "client-back")
    assert (await c_back.call("call.join", {"call_id": call_id}))["ok"]
    clock.advance(5)  # the new window's peer connection takes a while to come up: not charged either
    await tick(billing)
    assert (await meter(billing, call_id)).present_since is None
    await media_connected(c_back, call_id)
    assert await charges(billing, call_id) == 1, "rejoining inside a paid minute costs nothing"
    clock.advance(29)  # 59 s billable
    await tick(billing)
    assert await charges(billing, call_id) == 1
    clock.advance(1)  # 60 s billable: the second minute starts
    await tick(billing)
    assert await charges(billing, call_id) == 2 and await balance_of(billing, wallet(client.id)) == 800
    row = await meter(billing, call_id)
    assert row is not None and row.billable_ms == 60_000


async def _stopped(server: RunningServer, call_id: int) -> bool:
    row = await meter(server, call_id)
    return row is not None and row.present_since is None


async def test_when_the_money_runs_out_the_call_ends_and_the_wallet_never_goes_negative(
        billing: RunningServer, people: Users, clock: FrozenClock, sockets) -> None:
    therapist, client = await people.therapist(), await people.client()
    await credit(billing, client, 350)  # three minutes and 50p
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await join_both(sockets, billing, therapist, client, call_id)
    first = await c_sock.next("billing.low_balance")
    assert first == {"call_id": call_id, "seconds_left": 180, "minutes_left": 3}
    assert (await t_sock.next("billing.low_balance")) == first, "the therapist is warned too"
    for minute in (2, 3):
        clock.advance(60)
        await tick(billing)
        assert await charges(billing, call_id) == minute
    assert [w["seconds_left"] for w in c_sock.received("billing.low_balance")] == [180, 120, 60]
    clock.advance(60)
    await tick(billing)
    ended = await c_sock.next("call.ended")
    assert ended["reason"] == "balance_exhausted" and ended["ended_by"] is None
    assert (await t_sock.next("call.ended"))["reason"] == "balance_exhausted"
    assert await balance_of(billing, wallet(client.id)) == 50
    assert await charges(billing, call_id) == 3
    row = await wait_for(_settled(billing, call_id))
    assert row.exhausted_at is not None and row.billable_ms == 180_000
    assert await balance_of(billing, available(therapist.id)) == 225
    assert (await c_sock.call("call.join", {"call_id": call_id}))["error"]["code"] == "call_ended"
    await ledger_is_consistent(billing)


async def test_joining_with_an_empty_wallet_ends_the_call_at_once(
        billing: RunningServer, people: Users, sockets) -> None:
    therapist, client = await people.therapist(), await people.client()
    await credit(billing, client, 99)  # less than a minute
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await join_both(sockets, billing, therapist, client, call_id)
    assert (await c_sock.next("call.ended"))["reason"] == "balance_exhausted"
    assert await balance_of(billing, wallet(client.id)) == 99 and await charges(billing, call_id) == 0


async def test_charges_carry_on_and_settle_once_across_a_restart(
        make_settings: Callable[..., Settings], clock: FrozenClock, local_stripe: LocalStripe,
        http: aiohttp.ClientSession, sockets) -> None:
    settings = billing_settings(make_settings, local_stripe.url)
    first = await start_server(settings, clock=clock)
    people = Users(first, http, client_balance_pence=0)
    therapist, client = await people.therapist(), await people.client()
    await credit(first, client, 1000)
    call_id = await quick_connect_call(first, therapist, client)
    old_sockets = await join_both(sockets, first, therapist, client, call_id)
    clock.advance(30)
    first.services.stopping = True  # the process dies: none of its hooks run any more
    for sock in old_sockets:
        await sock.close()
    await first.runner.cleanup()

    second = await start_server(settings, clock=clock)
    try:
        await sweep_calls(second.services)  # the new process notices the members' connections are gone
        clock.advance(10)
        t_sock, c_sock = await join_both(sockets, second, therapist, client, call_id)
        assert await charges(second, call_id) == 1, "the minute paid before the restart is not charged again"
        clock.advance(29)
        await tick(second)
        assert await charges(second, call_id) == 1, "the time between the restart and the rejoin is not billable"
        clock.advance(1)
        await tick(second)
        assert await charges(second, call_id) == 2
        assert (await t_sock.call("call.hangup", {"call_id": call_id}))["ok"]
        await wait_for(_settled(second, call_id))
        for _ in range(2):  # a late hook or tick in any process settles nothing more
            await metering.call_finished(second.services.billing, call_id)
            await tick(second)
        assert await balance_of(second, available(therapist.id)) == 150
        async with second.services.db.session() as session:
            settlements = await session.scalar(select(func.count(LedgerTransaction.id)).where(
                LedgerTransaction.call_id == call_id, LedgerTransaction.kind == "settlement"))
        assert settlements == 1
        await ledger_is_consistent(second)
        for sock in (t_sock, c_sock):
            await sock.close()
    finally:
        await second.runner.cleanup()


async def test_test_calls_are_free(billing: RunningServer, people: Users, sockets) -> None:
    from calls.opening import open_call

    therapist, client = await people.therapist(), await people.client()
    svc = billing.services
    async with svc.db.transaction() as session:
        call = open_call(session, now=svc.clock.now(), kind=CallKind.test, therapist_id=therapist.id,
                         client_id=client.id, terms_version=svc.settings.terms_version, recording_consent=False)
        await session.flush()
        call_id = call.id
    await join_both(sockets, billing, therapist, client, call_id)
    await tick(billing)
    assert await meter(billing, call_id) is None and await charges(billing, call_id) == 0


async def test_asking_for_a_session_needs_the_minimum_balance(billing: RunningServer, people: Users, sockets) -> None:
    client = await people.client()
    sock = await sockets(billing, client, "client")
    ack = await sock.call("pool.request", {"reason": "I need to talk"})
    assert ack["ok"] is False and ack["error"]["code"] == "insufficient_balance"
    assert ack["error"]["details"] == {"balance_pence": 0, "required_pence": 1000}
    await credit(billing, client, 1000)
    ack = await sock.call("pool.request", {"reason": "I need to talk"})
    assert ack["ok"], ack


def test_the_commission_is_rounded_half_up_to_the_penny() -> None:
    assert metering.split(100, 2500) == (75, 25)
    assert metering.split(150, 3333) == (100, 50)   # 49.995 -> 50
    assert metering.split(1, 2500) == (1, 0)        # 0.25 -> 0
    assert metering.split(2, 2500) == (1, 1)        # 0.5 -> 1
    assert metering.split(100, 0) == (100, 0) and metering.split(100, 10_000) == (0, 100)


async def test_nothing_is_charged_until_both_report_their_peer_connection_connected(
        billing: RunningServer, people: Users, clock: FrozenClock, sockets) -> None:
    therapist, client = await people.therapist(), await people.client()
    await credit(billing, client, 1000)
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await sockets(billing, therapist, "therapist"), await sockets(billing, client, "client")
    for sock in (t_sock, c_sock):
        assert (await sock.call("call.join", {"call_id": call_id}))["ok"]
    await media_connected(t_sock, call_id)
    clock.advance(120)  # both in the room, but the client's browser never got its peer connection up
    await tick(billing, sweep=True)
    assert await charges(billing, call_id) == 0 and await balance_of(billing, wallet(client.id)) == 1000
    await media_connected(c_sock, call_id)
    assert await charges(billing, call_id) == 1, "the first minute is charged when the connection comes up"
    assert (await c_sock.next("billing.call"))["minutes_charged"] == 1


async def test_a_peer_connection_reported_lost_stops_the_meter_until_it_is_back(
        billing: RunningServer, people: Users, clock: FrozenClock, sockets) -> None:
    therapist, client = await people.therapist(), await people.client()
    await credit(billing, client, 1000)
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await join_both(sockets, billing, therapist, client, call_id)
    clock.advance(40)
    await media_connected(t_sock, call_id, connected=False)  # the network between them fails; signalling stays up
    clock.advance(300)
    await tick(billing, sweep=True)
    assert await charges(billing, call_id) == 1
    row = await meter(billing, call_id)
    assert row is not None and row.present_since is None and row.billable_ms == 40_000
    await media_connected(t_sock, call_id)
    clock.advance(19)
    await tick(billing)
    assert await charges(billing, call_id) == 1
    clock.advance(1)  # 60 s billable in all
    await tick(billing)
    assert await charges(billing, call_id) == 2 and await balance_of(billing, wallet(client.id)) == 800


async def test_only_a_member_in_the_call_from_this_window_can_report_its_peer_connection(
        billing: RunningServer, people: Users, sockets) -> None:
    therapist, client, stranger = await people.therapist(), await people.client(), await people.client()
    await credit(billing, client, 1000)
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await join_both(sockets, billing, therapist, client, call_id)
    other_tab = await sockets(billing, client, "client-other-tab")
    s_sock = await sockets(billing, stranger, "stranger")
    ack = await other_tab.call("call.media_state", {"call_id": call_id, "connected": False})
    assert ack["ok"] is False and ack["error"]["code"] == "not_joined"
    ack = await s_sock.call("call.media_state", {"call_id": call_id, "connected": False})
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    for bad in ({"call_id": call_id, "connected": "yes"}, {"call_id": call_id},
                {"call_id": call_id, "connected": True, "extra": 1}, {"call_id": "x", "connected": True}):
        ack = await c_sock.call("call.media_state", bad)
        assert ack["ok"] is False and ack["error"]["code"] in ("invalid", "unknown_field", "missing_field"), (bad, ack)
    row = await meter(billing, call_id)
    assert row is not None and row.present_since is not None, "the refused reports changed nothing"
