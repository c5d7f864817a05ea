"""Refunds and disputes, all through the ledger: an admin refunds a call's charge (in full or in part) and the
therapist's share is reversed with it; a client sends unused balance back to the card; a card dispute freezes the
amount until it is won or lost."""

from __future__ import annotations

import aiohttp

from billing.ledger import CARD_CLEARING, PLATFORM, available, frozen, pending, wallet
from billing_support import (LocalStripe, balance_of, billing, call_api, code_of, credit, join_both,  # noqa: F401
                             ledger_is_consistent, local_stripe, paid_top_up, people, quick_connect_call, tick)
from conftest import RunningServer, User, Users, wait_for
from core.clock import FrozenClock


async def charged_call(server: RunningServer, people: Users, clock: FrozenClock, sockets, minutes: int,
                       *, hang_up: bool = True) -> tuple[int, User, User]:
    therapist, client = await people.therapist(), await people.client()
    await credit(server, client, 1000)
    call_id = await quick_connect_call(server, therapist, client)
    t_sock, c_sock = await join_both(sockets, server, therapist, client, call_id)
    for _ in range(minutes - 1):
        clock.advance(60)
        await tick(server)
    if hang_up:
        clock.advance(30)
        assert (await c_sock.call("call.hangup", {"call_id": call_id}))["ok"]
    return call_id, therapist, client


async def test_a_full_refund_returns_the_charge_and_reverses_the_therapists_share(
        billing: RunningServer, people: Users, clock: FrozenClock, http: aiohttp.ClientSession, sockets) -> None:
    admin = await people.admin()
    call_id, therapist, client = await charged_call(billing, people, clock, sockets, 3)
    await wait_for(lambda: balance_of(billing, available(therapist.id)))
    platform_before = await balance_of(billing, PLATFORM)
    screen = await sockets(billing, client, "client")

    status, body = await call_api(http, billing, "GET", f"/api/admin/billing/calls/{call_id}", admin)
    assert status == 200 and body["charged_pence"] == 300 and body["refundable_pence"] == 300
    assert body["therapist_pence"] == 225 and body["minutes_charged"] == 3
    status, body = await call_api(http, billing, "POST", f"/api/admin/billing/calls/{call_id}/refunds", admin,
                                  {"amount_pence": 300, "reason": "connection was poor"})
    assert status == 200 and body["refunded_pence"] == 300 and body["refundable_pence"] == 0
    assert await balance_of(billing, wallet(client.id)) == 1000
    assert await balance_of(billing, available(therapist.id)) == 0
    assert await balance_of(billing, PLATFORM) == platform_before - 75
    assert (await screen.next("billing.balance")) == {"balance_pence": 1000}
    more = await call_api(http, billing, "POST", f"/api/admin/billing/calls/{call_id}/refunds", admin, {"amount_pence": 1})
    assert more[0] == 409 and code_of(more[1]) == "refund_too_large" and more[1]["error"]["details"] == {"refundable_pence": 0}
    await ledger_is_consistent(billing)


async def test_partial_refunds_add_up_to_exactly_the_whole_share(
        billing: RunningServer, people: Users, clock: FrozenClock, http: aiohttp.ClientSession, sockets) -> None:
    admin = await people.admin()
    call_id, therapist, client = await charged_call(billing, people, clock, sockets, 3)
    await wait_for(lambda: balance_of(billing, available(therapist.id)))
    for pence, therapist_left in ((1, 225), (150, 112), (149, 0)):  # 225 * 1 // 300 = 0; 225 * 151 // 300 = 113
        status, body = await call_api(http, billing, "POST", f"/api/admin/billing/calls/{call_id}/refunds", admin,
                                      {"amount_pence": pence})
        assert status == 200, body
        assert await balance_of(billing, available(therapist.id)) == therapist_left, pence
    assert await balance_of(billing, wallet(client.id)) == 1000


async def test_a_refund_during_the_call_comes_out_of_pending_earnings(
        billing: RunningServer, people: Users, clock: FrozenClock, http: aiohttp.ClientSession, sockets) -> None:
    admin = await people.admin()
    call_id, therapist, client = await charged_call(billing, people, clock, sockets, 2, hang_up=False)
    assert await balance_of(billing, pending(therapist.id)) == 150
    key = {"Idempotency-Key": "refund-call-once"}
    for _ in range(2):  # the admin's retry refunds once
        status, body = await call_api(http, billing, "POST", f"/api/admin/billing/calls/{call_id}/refunds", admin,
                                      {"amount_pence": 100}, key)
        assert status == 200 and body["refunded_pence"] == 100
    assert await balance_of(billing, pending(therapist.id)) == 75
    assert await balance_of(billing, wallet(client.id)) == 900


async def test_earnings_already_withdrawn_are_borne_by_the_platform(
        billing: RunningServer, people: Users, clock: FrozenClock, http: aiohttp.ClientSession, sockets) -> None:
    admin = await people.admin()
    call_id, therapist, client = await charged_call(billing, people, clock, sockets, 2)
    await wait_for(lambda: balance_of(billing, available(therapist.id)))
    assert (await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, {"amount_pence": 150}))[0] == 201
    platform_before = await balance_of(billing, PLATFORM)
    status, body = await call_api(http, billing, "POST", f"/api/admin/billing/calls/{call_id}/refunds", admin,
                                  {"amount_pence": 200})
    assert status == 200
    assert await balance_of(billing, available(therapist.id)) == 0
    assert await balance_of(billing, PLATFORM) == platform_before - 200
    await ledger_is_consistent(billing)


async def test_bad_refunds_are_refused(billing: RunningServer, people: Users, clock: FrozenClock,
                                       http: aiohttp.ClientSession, sockets) -> None:
    admin = await people.admin()
    call_id, _, client = await charged_call(billing, people, clock, sockets, 1)
    for body, status, code in [({"amount_pence": 0}, 400, "invalid"), ({"amount_pence": -100}, 400, "invalid"),
                               ({"amount_pence": 1.5}, 400, "invalid"), ({"amount_pence": 101}, 409, "refund_too_large"),
                               ({"amount_pence": 10**20}, 400, "invalid"), ({"amount": 5}, 400, "unknown_field")]:
        got = await call_api(http, billing, "POST", f"/api/admin/billing/calls/{call_id}/refunds", admin, body)
        assert (got[0], code_of(got[1])) == (status, code), body
    unknown = await call_api(http, billing, "POST", "/api/admin/billing/calls/999999/refunds", admin, {"amount_pence": 1})
    assert unknown[0] == 404
    assert await balance_of(billing, wallet(client.id)) == 900


async def test_unused_balance_goes_back_to_the_card(billing: RunningServer, people: Users, http: aiohttp.ClientSession,
                                                     local_stripe: LocalStripe) -> None:
    client = await people.client()
    top_up = await paid_top_up(http, billing, local_stripe, client, 2000)
    too_much = await call_api(http, billing, "POST", "/api/billing/refunds", client, {"amount_pence": 2500})
    assert too_much[0] == 409 and code_of(too_much[1]) in ("insufficient_balance", "refund_too_large")
    status, body = await call_api(http, billing, "POST", "/api/billing/refunds", client, {"amount_pence": 1500})
    assert status == 200 and body == {"refunded_pence": 1500, "failed_pence": 0, "balance_pence": 500}
    async with local_stripe.client() as stripe_api:
        refunds = await stripe_api.v1.refunds.list_async({"payment_intent": top_up["payment_intent"]})
    assert [r.amount for r in refunds.data] == [1500]
    granted = await call_api(http, billing, "POST", "/api/billing/refunds", client, {"amount_pence": 600})
    assert granted[0] == 409 and code_of(granted[1]) == "insufficient_balance"
    await credit(billing, client, 1000)  # money that did not come from a card cannot go to one
    not_card = await call_api(http, billing, "POST", "/api/billing/refunds", client, {"amount_pence": 600})
    assert not_card[0] == 409 and code_of(not_card[1]) == "refund_too_large"
    assert await balance_of(billing, wallet(client.id)) == 1500
    await ledger_is_consistent(billing)


async def test_a_card_dispute_freezes_the_amount_until_it_is_lost(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession, local_stripe: LocalStripe, sockets) -> None:
    client, admin = await people.client(), await people.admin()
    top_up = await paid_top_up(http, billing, local_stripe, client, 3000)
    screen = await sockets(billing, client, "client")
    async with http.post(f"{local_stripe.url}/_ext/charges/{top_up['charge']}/dispute", data={"amount": "3000"},
                         headers={"Authorization": "Bearer sk_test_x"}) as resp:
        assert resp.status == 200, await resp.text()
        dispute_id = (await resp.json())["id"]
    assert (await screen.next("billing.balance", timeout=10)) == {"balance_pence": 0}
    assert await balance_of(billing, frozen(client.id)) == 3000
    status, body = await call_api(http, billing, "GET", "/api/admin/billing/disputes?status=open", admin)
    assert [d["id"] for d in body["disputes"]] == [dispute_id] and body["disputes"][0]["frozen_pence"] == 3000
    wallet_view = (await call_api(http, billing, "GET", "/api/billing/wallet", client))[1]["wallet"]
    assert wallet_view["balance_pence"] == 0 and wallet_view["frozen_pence"] == 3000
    refund = await call_api(http, billing, "POST", "/api/billing/refunds", client, {"amount_pence": 1})
    assert refund[0] == 409

    clearing_before = await balance_of(billing, CARD_CLEARING)
    async with http.post(f"{local_stripe.url}/_ext/disputes/{dispute_id}/close", data={"status": "lost"},
                         headers={"Authorization": "Bearer sk_test_x"}) as resp:
        assert resp.status == 200

    async def closed() -> bool:
        rows = (await call_api(http, billing, "GET", "/api/admin/billing/disputes?status=lost", admin))[1]["disputes"]
        return bool(rows)

    await wait_for(closed, timeout=10)
    assert await balance_of(billing, frozen(client.id)) == 0
    assert await balance_of(billing, CARD_CLEARING) == clearing_before + 3000
    await ledger_is_consistent(billing)


async def test_a_won_dispute_releases_the_frozen_amount_and_the_spent_part_is_not_frozen(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession, local_stripe: LocalStripe) -> None:
    client, admin = await people.client(), await people.admin()
    top_up = await paid_top_up(http, billing, local_stripe, client, 2000)
    svc = billing.services
    from billing import ledger

    await ledger.run_once(svc.db, lambda s: ledger.post(s, key="spent-some", kind="call_charge", now=svc.clock.now(),
                                                        legs=[(wallet(client.id), -1500), (PLATFORM, 1500)]))
    async with http.post(f"{local_stripe.url}/_ext/charges/{top_up['charge']}/dispute",
                         headers={"Authorization": "Bearer sk_test_x"}) as resp:
        dispute_id = (await resp.json())["id"]

    async def opened() -> list:
        return (await call_api(http, billing, "GET", "/api/admin/billing/disputes", admin))[1]["disputes"]

    [dispute] = await wait_for(opened, timeout=10)
    assert (dispute["amount_pence"], dispute["frozen_pence"]) == (2000, 500)
    async with http.post(f"{local_stripe.url}/_ext/disputes/{dispute_id}/close", data={"status": "won"},
                         headers={"Authorization": "Bearer sk_test_x"}):
        pass

    async def won() -> bool:
        return (await opened())[0]["status"] == "won"

    await wait_for(won, timeout=10)
    assert await balance_of(billing, wallet(client.id)) == 500 and await balance_of(billing, frozen(client.id)) == 0
