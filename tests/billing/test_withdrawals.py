"""Withdrawals: requested from available earnings, an e-mail asking for the invoice, the invoice marked received, the
payout scheduled for the Friday of the following UK week, paid by Stripe Connect transfer or bank transfer; each step
in the ledger and the audit log. Two withdrawals racing for the same earnings: one wins."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import AsyncIterator, Callable

import aiohttp
import pytest

from billing.ledger import PAYOUTS, available, withdrawing
from billing_support import (any_db_billing, LocalStripe, audits, balance_of, billing, billing_settings, call_api, code_of,  # noqa: F401
                             earn, ledger_is_consistent, local_stripe, outbox_for, people, signed_in_again)
from conftest import RunningServer, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings


async def test_a_withdrawal_goes_from_request_to_invoice_to_a_friday_bank_payment(
        billing: RunningServer, people: Users, clock: FrozenClock, http: aiohttp.ClientSession, sockets) -> None:
    therapist, admin = await people.therapist(), await people.admin()
    await earn(billing, therapist, 5000)
    screen = await sockets(billing, therapist, "therapist")

    status, body = await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, {"amount_pence": 3000})
    assert status == 201, body
    withdrawal = body["withdrawal"]
    assert withdrawal["status"] == "requested" and withdrawal["amount_pence"] == 3000
    wid = withdrawal["id"]
    assert (await balance_of(billing, available(therapist.id)), await balance_of(billing, withdrawing(therapist.id))) == (2000, 3000)
    [mail] = await outbox_for(billing, therapist.email, "billing.invoice_request")
    assert "£30.00" in mail.subject and f"W-{wid}" in mail.body and "invoices@therapy.local" in mail.body
    status, body = await call_api(http, billing, "GET", "/api/billing/earnings", therapist)
    assert body["earnings"]["available_pence"] == 2000 and body["earnings"]["withdrawing_pence"] == 3000
    assert body["withdrawals"][0]["id"] == wid and body["connect"]["ready"] is False

    # Monday 5 January 2026, 09:00: the invoice arrives; the payout is Friday 16 January.
    status, body = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/invoice-received", admin)
    assert status == 200 and body["withdrawal"]["status"] == "scheduled"
    assert body["withdrawal"]["payout_date"] == "2026-01-16"
    assert (await screen.next("billing.withdrawal"))["withdrawal"]["payout_date"] == "2026-01-16"
    again = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/invoice-received", admin)
    assert again[0] == 409 and code_of(again[1]) == "wrong_state"

    pay = {"method": "bank", "reference": "BACS-0001"}
    early = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/pay", admin, pay)
    assert early[0] == 409 and code_of(early[1]) == "not_due" and early[1]["error"]["details"]["payout_date"] == "2026-01-16"
    clock.set(datetime(2026, 1, 16, 0, 0, tzinfo=timezone.utc))
    admin, therapist = await signed_in_again(http, billing, admin), await signed_in_again(http, billing, therapist)
    missing_ref = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/pay", admin, {"method": "bank"})
    assert missing_ref[0] == 400 and code_of(missing_ref[1]) == "missing_field"
    status, body = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/pay", admin, pay)
    assert status == 200 and body["withdrawal"]["status"] == "paid" and body["withdrawal"]["method"] == "bank"
    assert body["withdrawal"]["bank_reference"] == "BACS-0001"
    twice = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/pay", admin, pay)
    assert twice[0] == 409 and code_of(twice[1]) == "already_paid"

    assert await balance_of(billing, withdrawing(therapist.id)) == 0
    status, body = await call_api(http, billing, "GET", "/api/billing/earnings", therapist)
    assert body["earnings"]["paid_out_pence"] == 3000 and body["earnings"]["available_pence"] == 2000
    for action in ("billing.withdrawal_requested", "billing.invoice_received", "billing.withdrawal_paid"):
        assert len(await audits(billing, action, wid)) == 1, action
    await ledger_is_consistent(billing)


async def test_a_ready_connected_account_is_paid_by_stripe_transfer(
        billing: RunningServer, people: Users, clock: FrozenClock, http: aiohttp.ClientSession,
        local_stripe: LocalStripe, sockets) -> None:
    therapist, admin = await people.therapist(), await people.admin()
    screen = await sockets(billing, therapist, "therapist")
    status, body = await call_api(http, billing, "POST", "/api/billing/connect/onboarding", therapist)
    assert status == 200, body
    account, url = body["connect"]["account"], body["connect"]["onboarding_url"]
    assert account.startswith("acct_") and body["connect"]["ready"] is False and url.startswith(local_stripe.url)
    again = await call_api(http, billing, "POST", "/api/billing/connect/onboarding", therapist)
    assert again[1]["connect"]["account"] == account, "one account per therapist"

    await earn(billing, therapist, 4000)
    wid = (await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, {"amount_pence": 4000}))[1][
        "withdrawal"]["id"]
    await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/invoice-received", admin)
    clock.set(datetime(2026, 1, 16, 9, 0, tzinfo=timezone.utc))
    admin = await signed_in_again(http, billing, admin)
    not_ready = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/pay", admin, {"method": "stripe"})
    assert not_ready[0] == 409 and code_of(not_ready[1]) == "connect_not_ready"

    # The therapist completes Stripe's hosted onboarding; Stripe sends account.updated.
    async with http.post(url, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"].endswith("/dashboard?connect=done")
    assert (await screen.next("billing.connect", timeout=10))["ready"] is True
    status, body = await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/pay", admin, {"method": "stripe"})
    assert status == 200, body
    assert body["withdrawal"]["status"] == "paid" and body["withdrawal"]["transfer_id"].startswith("tr_")
    async with local_stripe.client() as stripe_api:
        transfer = await stripe_api.v1.transfers.retrieve_async(body["withdrawal"]["transfer_id"])
    assert (transfer.amount, transfer.currency, transfer.destination) == (4000, "gbp", account)
    assert await balance_of(billing, withdrawing(therapist.id)) == 0 and await balance_of(billing, PAYOUTS) >= 4000


async def test_cancelling_returns_the_earnings(billing: RunningServer, people: Users,
                                               http: aiohttp.ClientSession) -> None:
    therapist, admin, other = await people.therapist(), await people.admin(), await people.therapist()
    await earn(billing, therapist, 2000)
    first = (await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, {"amount_pence": 500}))[1]
    second = (await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, {"amount_pence": 700}))[1]
    stranger = await call_api(http, billing, "POST", f"/api/billing/withdrawals/{first['withdrawal']['id']}/cancel", other)
    assert stranger[0] == 404 and code_of(stranger[1]) == "not_found"
    status, body = await call_api(http, billing, "POST", f"/api/billing/withdrawals/{first['withdrawal']['id']}/cancel",
                                  therapist)
    assert status == 200 and body["withdrawal"]["status"] == "cancelled"
    wid = second["withdrawal"]["id"]
    await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/invoice-received", admin)
    late = await call_api(http, billing, "POST", f"/api/billing/withdrawals/{wid}/cancel", therapist)
    assert late[0] == 409 and code_of(late[1]) == "withdrawal_not_cancellable"
    assert (await call_api(http, billing, "POST", f"/api/admin/billing/withdrawals/{wid}/cancel", admin))[0] == 200
    assert await balance_of(billing, available(therapist.id)) == 2000
    assert await balance_of(billing, withdrawing(therapist.id)) == 0
    listed = (await call_api(http, billing, "GET", "/api/admin/billing/withdrawals?status=cancelled", admin))[1]
    assert {w["id"] for w in listed["withdrawals"]} >= {first["withdrawal"]["id"], wid}


async def test_bad_withdrawals_are_refused_and_change_nothing(billing: RunningServer, people: Users,
                                                              http: aiohttp.ClientSession) -> None:
    therapist = await people.therapist()
    await earn(billing, therapist, 1000)
    cases = [({"amount_pence": 1001}, 409, "insufficient_earnings"), ({"amount_pence": -5}, 400, "invalid"),
             ({"amount_pence": 0}, 400, "invalid"), ({"amount_pence": 99}, 400, "invalid"),
             ({"amount_pence": 12.5}, 400, "invalid"), ({"amount_pence": 10**40}, 400, "invalid"),
             ({"amount_pence": "all"}, 400, "invalid"), ({}, 400, "missing_field")]
    for body, status, code in cases:
        got = await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, body)
        assert (got[0], code_of(got[1])) == (status, code), body
    assert (await call_api(http, billing, "GET", "/api/billing/withdrawals", therapist))[1]["withdrawals"] == []
    assert await balance_of(billing, available(therapist.id)) == 1000
    assert await outbox_for(billing, therapist.email, "billing.invoice_request") == []



async def test_two_withdrawals_racing_for_the_same_earnings_one_wins(
        any_db_billing: RunningServer, http: aiohttp.ClientSession) -> None:
    server = any_db_billing
    therapist = await Users(server, http).therapist()
    await earn(server, therapist, 2500)
    results = await asyncio.gather(*(call_api(http, server, "POST", "/api/billing/withdrawals", therapist,
                                              {"amount_pence": 2500}) for _ in range(6)))
    assert sorted(status for status, _ in results) == [201, 409, 409, 409, 409, 409]
    assert {code_of(body) for status, body in results if status == 409} == {"insufficient_earnings"}
    assert await balance_of(server, available(therapist.id)) == 0
    assert await balance_of(server, withdrawing(therapist.id)) == 2500
    assert len(await outbox_for(server, therapist.email, "billing.invoice_request")) == 1
    await ledger_is_consistent(server)


async def test_a_retried_request_with_its_idempotency_key_is_one_withdrawal(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession) -> None:
    therapist = await people.therapist()
    await earn(billing, therapist, 1000)
    key = {"Idempotency-Key": "earnings-page-1"}
    first = await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, {"amount_pence": 600}, key)
    again = await call_api(http, billing, "POST", "/api/billing/withdrawals", therapist, {"amount_pence": 600}, key)
    assert first[1]["withdrawal"]["id"] == again[1]["withdrawal"]["id"]
    assert await balance_of(billing, available(therapist.id)) == 400
