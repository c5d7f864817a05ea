"""Top-ups through Stripe (the local Stripe-compatible server): a PaymentIntent created with an idempotency key, the
card confirmed as Stripe.js would, the signed webhook crediting the wallet once and the balance pushed live; declines
reach the client; bad amounts change nothing."""

from __future__ import annotations

import aiohttp

from billing.ledger import wallet
from billing_support import (DECLINED, LocalStripe, balance_of, billing, call_api, code_of, confirm_card, credit,  # noqa: F401
                             ledger_is_consistent, local_stripe, people)
from conftest import RunningServer, Users


async def test_a_top_up_is_credited_once_when_stripe_says_it_succeeded(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession, local_stripe: LocalStripe, sockets) -> None:
    client = await people.client()
    screen = await sockets(billing, client, "client")
    status, body = await call_api(http, billing, "POST", "/api/billing/topups", client, {"amount_pence": 2500})
    assert status == 201, body
    assert body["client_secret"].startswith("pi_") and body["test_mode"] is True
    assert body["topup"]["status"] == "pending" and body["topup"]["amount_pence"] == 2500
    intent_id = body["client_secret"].split("_secret_")[0]

    confirmed = await confirm_card(local_stripe, intent_id)
    assert confirmed.status == "succeeded"
    pushed = await screen.next("billing.balance", timeout=10)
    assert pushed == {"balance_pence": 2500}
    assert (await screen.next("billing.topup"))["topup"]["status"] == "succeeded"

    status, body = await call_api(http, billing, "GET", "/api/billing/wallet", client)
    assert status == 200 and body["wallet"]["balance_pence"] == 2500
    assert body["topups"][0]["status"] == "succeeded" and body["config"]["test_mode"] is True
    assert await balance_of(billing, wallet(client.id)) == 2500
    await ledger_is_consistent(billing)


async def test_a_declined_card_is_a_clear_failure_and_credits_nothing(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession, local_stripe: LocalStripe, sockets) -> None:
    client = await people.client()
    screen = await sockets(billing, client, "client")
    status, body = await call_api(http, billing, "POST", "/api/billing/topups", client, {"amount_pence": 1000})
    assert status == 201
    topup_id, intent_id = body["topup"]["id"], body["client_secret"].split("_secret_")[0]

    declined = await confirm_card(local_stripe, intent_id, DECLINED)
    assert getattr(declined, "code", None) == "card_declined"
    failed = await screen.next("billing.topup", timeout=10)
    assert failed["topup"]["status"] == "failed" and failed["topup"]["failure_message"] == "Your card was declined."
    status, body = await call_api(http, billing, "GET", f"/api/billing/topups/{topup_id}", client)
    assert body["topup"]["status"] == "failed" and body["topup"]["failure_code"] == "card_declined"
    assert await balance_of(billing, wallet(client.id)) == 0
    assert screen.received("billing.balance") == []


async def test_a_retried_request_with_the_same_idempotency_key_is_one_top_up(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession) -> None:
    client = await people.client()
    key = {"Idempotency-Key": "wallet-page-7f3a"}
    first = await call_api(http, billing, "POST", "/api/billing/topups", client, {"amount_pence": 1500}, key)
    again = await call_api(http, billing, "POST", "/api/billing/topups", client, {"amount_pence": 1500}, key)
    assert first[0] == again[0] == 201
    assert first[1]["topup"]["id"] == again[1]["topup"]["id"] and first[1]["client_secret"] == again[1]["client_secret"]
    other = await call_api(http, billing, "POST", "/api/billing/topups", client, {"amount_pence": 1600}, key)
    assert other[0] == 409 and code_of(other[1]) == "idempotency_mismatch"
    # Another client's identical key is theirs alone.
    stranger = await people.client()
    theirs = await call_api(http, billing, "POST", "/api/billing/topups", stranger, {"amount_pence": 1500}, key)
    assert theirs[0] == 201 and theirs[1]["topup"]["id"] != first[1]["topup"]["id"]


async def test_bad_amounts_are_refused_and_change_nothing(billing: RunningServer, people: Users,
                                                          http: aiohttp.ClientSession) -> None:
    client = await people.client()
    cases = [
        ({"amount_pence": -500}, 400, "invalid"), ({"amount_pence": 0}, 400, "invalid"),
        ({"amount_pence": 1000.5}, 400, "invalid"), ({"amount_pence": 1000.0}, 400, "invalid"),
        ({"amount_pence": "1000"}, 400, "invalid"), ({"amount_pence": True}, 400, "invalid"),
        ({"amount_pence": 10**30}, 400, "invalid"), ({"amount_pence": 499}, 400, "invalid"),
        ({"amount_pence": 50_001}, 400, "invalid"), ({}, 400, "missing_field"),
        ({"amount_pence": 1000, "currency": "usd"}, 400, "unknown_field"),
    ]
    for body, status, code in cases:
        got = await call_api(http, billing, "POST", "/api/billing/topups", client, body)
        assert (got[0], code_of(got[1])) == (status, code), body
    async with http.post(f"{billing.url}/api/billing/topups", data="amount_pence=1000", headers=client.headers) as resp:
        assert resp.status == 415
    status, body = await call_api(http, billing, "GET", "/api/billing/wallet", client)
    assert body["topups"] == [] and body["wallet"]["balance_pence"] == 0


async def test_a_top_up_may_not_take_the_wallet_over_its_limit(billing: RunningServer, people: Users,
                                                                 http: aiohttp.ClientSession) -> None:
    client = await people.client()
    await credit(billing, client, 190_000)
    status, body = await call_api(http, billing, "POST", "/api/billing/topups", client, {"amount_pence": 20_000})
    assert status == 409 and code_of(body) == "wallet_limit" and body["error"]["details"]["max_pence"] == 200_000


async def test_without_stripe_top_ups_are_unavailable(server: RunningServer, users: Users,
                                                      http: aiohttp.ClientSession) -> None:
    client = await users.client(balance_pence=0)
    status, body = await call_api(http, server, "POST", "/api/billing/topups", client, {"amount_pence": 1000})
    assert status == 503 and code_of(body) == "payments_unavailable"
    status, body = await call_api(http, server, "GET", "/api/billing/wallet", client)
    assert body["config"]["payments_available"] is False and body["wallet"]["balance_pence"] == 0
