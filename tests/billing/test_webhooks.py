"""The Stripe webhook endpoint: only correctly signed, fresh events are believed; each credits at most once, whether
it is replayed, arrives out of order, or is delivered 50 times at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
from sqlalchemy import func, select

from billing.ledger import wallet
from billing.models import LedgerTransaction, StripeEvent
from billing_support import (any_db_billing, WEBHOOK_SECRET, LocalStripe, balance_of, billing, billing_settings, call_api,  # noqa: F401
                             code_of, deliver, event, ledger_is_consistent, local_stripe, people, sign)
from conftest import RunningServer, User, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings


async def new_topup(http: aiohttp.ClientSession, server: RunningServer, client: User, pence: int = 2000) -> dict[str, Any]:
    status, body = await call_api(http, server, "POST", "/api/billing/topups", client, {"amount_pence": pence})
    assert status == 201, body
    return {"id": body["client_secret"].split("_secret_")[0], "object": "payment_intent", "amount": pence,
            "currency": "gbp", "status": "succeeded", "metadata": {"topup_id": str(body["topup"]["id"]),
                                                                   "user_id": str(client.id)},
            "latest_charge": "ch_test_" + body["topup"]["id"].__str__()}


def failed(intent: dict[str, Any]) -> dict[str, Any]:
    return {**intent, "status": "requires_payment_method", "latest_charge": None,
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds",
                                   "message": "Your card has insufficient funds."}}


async def count(server: RunningServer, model: Any, *where: Any) -> int:
    async with server.services.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)



async def test_fifty_concurrent_deliveries_of_one_event_credit_once(
        any_db_billing: RunningServer, http: aiohttp.ClientSession) -> None:
    server = any_db_billing
    client = await Users(server, http, client_balance_pence=0).client()
    intent = await new_topup(http, server, client, 3000)
    payload = event("payment_intent.succeeded", intent, "evt_concurrent_1")
    results = await asyncio.gather(*(deliver(http, server, payload) for _ in range(50)))
    assert all(status == 200 for status, _ in results), results[:3]
    assert sum(not body["duplicate"] for _, body in results) == 1
    # Other events about the same payment (Stripe sends a new event for a resend) credit nothing more either.
    others = await asyncio.gather(*(deliver(http, server, event("payment_intent.succeeded", intent)) for _ in range(10)))
    assert all(status == 200 and not body["duplicate"] for status, body in others)
    assert await balance_of(server, wallet(client.id)) == 3000
    assert await count(server, LedgerTransaction, LedgerTransaction.kind == "topup") == 1
    assert await count(server, StripeEvent, StripeEvent.id == "evt_concurrent_1") == 1
    await ledger_is_consistent(server)


async def test_replays_and_out_of_order_failures_do_not_change_a_credited_top_up(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession, sockets) -> None:
    client = await people.client()
    intent = await new_topup(http, billing, client, 1200)
    success = event("payment_intent.succeeded", intent)
    late_failure = event("payment_intent.payment_failed", failed(intent), created=int(time.time()) - 60)
    assert (await deliver(http, billing, success))[1] == {"received": True, "duplicate": False}
    assert (await deliver(http, billing, success))[1] == {"received": True, "duplicate": True}
    assert (await deliver(http, billing, late_failure))[1]["duplicate"] is False
    status, body = await call_api(http, billing, "GET", f"/api/billing/topups/{intent['metadata']['topup_id']}", client)
    assert body["topup"]["status"] == "succeeded"
    assert await balance_of(billing, wallet(client.id)) == 1200


async def test_a_failure_then_a_success_with_another_card_credits_once(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession, sockets) -> None:
    client = await people.client()
    screen = await sockets(billing, client, "client")
    intent = await new_topup(http, billing, client, 800)
    assert (await deliver(http, billing, event("payment_intent.payment_failed", failed(intent))))[0] == 200
    shown = await screen.next("billing.topup")
    assert shown["topup"]["status"] == "failed" and shown["topup"]["failure_message"] == "Your card has insufficient funds."
    assert shown["topup"]["failure_code"] == "insufficient_funds"
    assert (await deliver(http, billing, event("payment_intent.succeeded", intent)))[0] == 200
    assert (await screen.next("billing.balance")) == {"balance_pence": 800}
    assert await balance_of(billing, wallet(client.id)) == 800


async def test_forged_stale_and_malformed_deliveries_are_refused_and_change_nothing(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession) -> None:
    client = await people.client()
    intent = await new_topup(http, billing, client, 1000)
    payload = event("payment_intent.succeeded", intent)
    tampered = payload.replace(b'"amount": 1000', b'"amount": 100000')
    cases: list[tuple[bytes, str | None, str]] = [
        (payload, None, "bad_signature"),                                              # unsigned
        (payload, sign(payload, "whsec_someone_else"), "bad_signature"),               # wrong secret
        (tampered, sign(payload), "bad_signature"),                                    # body changed after signing
        (payload, "t=abc,v1=123", "bad_signature"),                                    # malformed header
        (payload, f"t={int(time.time())}", "bad_signature"),                           # no v1 signature
        (payload, sign(payload, timestamp=int(time.time()) - 3600), "stale_signature"),  # replayed an hour later
        (b"not json", sign(b"not json"), "invalid_event"),
        (b'{"id": "evt_1"}', sign(b'{"id": "evt_1"}'), "invalid_event"),
        (b"[1, 2]", sign(b"[1, 2]"), "invalid_event"),
        (b'"text"', sign(b'"text"'), "invalid_event"),
        (b'{"id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": 5}}',
         sign(b'{"id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": 5}}'), "invalid_event"),
        ("{\"id\": \"\u00e9\"}".encode("latin-1"), sign("{\"id\": \"\u00e9\"}".encode("latin-1")), "invalid_event"),  # not UTF-8
    ]
    for body, signature, code in cases:
        status, reply = await deliver(http, billing, body, signature)
        assert (status, code_of(reply)) == (400, code), (body[:40], signature)
    assert await balance_of(billing, wallet(client.id)) == 0
    assert await count(billing, StripeEvent) == 0


async def test_unknown_events_and_payments_are_refused(billing: RunningServer, people: Users,
                                                      http: aiohttp.ClientSession) -> None:
    client = await people.client()
    intent = await new_topup(http, billing, client, 1000)
    status, body = await deliver(http, billing, event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert (status, code_of(body)) == (400, "unknown_event_type")
    stranger = {**intent, "id": "pi_nobody_made_this", "metadata": {}}
    status, body = await deliver(http, billing, event("payment_intent.succeeded", stranger))
    assert (status, code_of(body)) == (400, "unknown_payment_intent")
    wrong_amount = {**intent, "amount": 999}
    status, body = await deliver(http, billing, event("payment_intent.succeeded", wrong_amount))
    assert (status, code_of(body)) == (400, "amount_mismatch")
    wrong_currency = {**intent, "currency": "usd"}
    assert code_of((await deliver(http, billing, event("payment_intent.succeeded", wrong_currency)))[1]) == "amount_mismatch"
    # A refused event is not recorded, so Stripe's retry (once the cause is fixed) is still acted on.
    assert await count(billing, StripeEvent) == 0
    assert await balance_of(billing, wallet(client.id)) == 0
    async with http.post(f"{billing.url}/api/billing/stripe/webhook", data=b"x" * (300 * 1024),
                         headers={"Stripe-Signature": "t=1,v1=0"}) as resp:
        assert resp.status == 413


async def test_an_event_for_a_top_up_whose_intent_id_was_not_recorded_is_matched_by_its_metadata(
        billing: RunningServer, people: Users, http: aiohttp.ClientSession) -> None:
    """The process stopped between creating the PaymentIntent and recording its id: the signed metadata finds it."""
    from billing.models import TopUp

    client = await people.client()
    intent = await new_topup(http, billing, client, 700)
    async with billing.services.db.transaction() as session:
        row = await session.get(TopUp, int(intent["metadata"]["topup_id"]))
        assert row is not None
        row.payment_intent_id = None
    assert (await deliver(http, billing, event("payment_intent.succeeded", intent)))[0] == 200
    assert await balance_of(billing, wallet(client.id)) == 700
    forged = {**intent, "id": "pi_other", "metadata": {"topup_id": intent["metadata"]["topup_id"], "user_id": "999"}}
    assert code_of((await deliver(http, billing, event("payment_intent.succeeded", forged)))[1]) == "unknown_payment_intent"


def test_signatures_are_made_the_way_stripe_makes_them() -> None:
    """Our test signer agrees with the official library's own verification."""
    import stripe

    payload = json.dumps({"id": "evt_x", "object": "event"}).encode()
    assert stripe.WebhookSignature.verify_header(payload.decode(), sign(payload), WEBHOOK_SECRET, 300)
