"""Billing over REST: wallet and top-ups (clients), earnings, withdrawals and Stripe Connect (therapists), transactions
and their CSV (everyone, their own only), the Stripe webhook (public, signed), and the admin's withdrawals, payouts,
refunds and disputes. `billing_services` builds the billing context of one server process."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from accounts.principal import Principal
from billing import connect, disputes, refunds, statements, topups, wallet, webhooks, withdrawals
from billing.context import BillingContext
from billing.metering import MeterTicker
from billing.stripe_client import STRIPE_JS_URL
from billing.testmode import check_billing_settings, stripe_setup
from billing.topups import parse_amount
from calls import membership
from core.validation import only_fields, text
from signalling.access import Access
from signalling.http import endpoint, json_response, read_body, read_json, services
from signalling.routes.params import path_id
from signalling.services import Services

routes = web.RouteTableDef()
IDEMPOTENCY_HEADER = "Idempotency-Key"


def billing_services(svc: Services) -> tuple[BillingContext, list[Any]]:
    """The billing context of this process, and its background jobs (the meter ticker, the Stripe gateway's HTTP
    session, and in the embedded test mode the local Stripe stand-in)."""
    check_billing_settings(svc.settings)
    setup = stripe_setup(svc.settings)

    async def push(user_id: int, event: str, payload: dict[str, Any]) -> None:
        await svc.sio.emit(event, payload, to=f"user:{user_id}")

    async def end_call(call_id: int, reason: str) -> None:
        from signalling.events.calls import finish_call

        call = await membership.end_call(svc.calls, call_id, ended_by=None, reason=reason)
        if call is not None:
            await finish_call(svc, call)

    ctx = BillingContext(db=svc.db, keyring=svc.keyring, clock=svc.clock, settings=svc.settings, stripe=setup.gateway,
                         push=push, end_call=end_call, outbox_kick=svc.dispatcher.kick,
                         webhook_secret=setup.webhook_secret)
    jobs: list[Any] = [MeterTicker(ctx)]
    if setup.gateway is not None:
        jobs.append(setup.gateway)
    if setup.local_server is not None:
        jobs.append(setup.local_server)
    return ctx, jobs


def _billing(request: web.Request) -> BillingContext:
    return services(request).billing


def _config(ctx: BillingContext, typical_rate_pence: int | None = None) -> dict[str, Any]:
    s = ctx.settings
    return {
        "currency": "gbp", "test_mode": ctx.test_mode, "payments_available": ctx.stripe is not None,
        "publishable_key": ctx.stripe.publishable_key if ctx.stripe is not None else "",
        "stripe_js_url": ctx.stripe.js_url if ctx.stripe is not None else STRIPE_JS_URL,
        "topup_min_pence": s.billing_topup_min_pence, "topup_max_pence": s.billing_topup_max_pence,
        "wallet_max_pence": s.billing_wallet_max_pence, "min_request_pence": s.billing_min_request_pence,
        "calls_charged": s.billing_charge_calls, "typical_rate_pence": typical_rate_pence,
    }


# ---------------------------------------------------------------- clients


@routes.get("/api/billing/wallet")
@endpoint(Access.client)
async def get_wallet(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    ctx = _billing(request)
    return json_response({"wallet": await wallet.wallet_view(ctx, principal.user_id),
                          "config": _config(ctx, await wallet.typical_rate(ctx.db)),
                          "topups": await topups.list_topups(ctx, principal.user_id, limit=20)})


@routes.post("/api/billing/topups")
@endpoint(Access.client)
async def create_topup(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    body = await read_json(request)
    created = await topups.create_topup(_billing(request), principal, body, request.headers.get(IDEMPOTENCY_HEADER))
    return json_response(created, status=201)


@routes.get("/api/billing/topups/{id}")
@endpoint(Access.client)
async def get_topup(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response(await topups.get_topup(_billing(request), principal, path_id(request)))


@routes.post("/api/billing/refunds")
@endpoint(Access.client)
async def refund_to_card(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response(await refunds.refund_to_card(_billing(request), principal, await read_json(request)))


# ---------------------------------------------------------------- everyone: their own transactions


@routes.get("/api/billing/transactions")
@endpoint(Access.user)
async def list_transactions(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    limit, before = statements.page_query(request.query)
    rows = await statements.entries(_billing(request), principal.user_id, limit=limit, before=before)
    return json_response({"transactions": rows, "next_before": rows[-1]["entry_id"] if len(rows) == limit else None})


@routes.get("/api/billing/transactions.csv")
@endpoint(Access.user)
async def transactions_csv(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    body = await statements.csv_export(_billing(request), principal.user_id)
    return web.Response(text=body, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="transactions.csv"',
                                 "Cache-Control": "no-store"})


# ---------------------------------------------------------------- therapists


@routes.get("/api/billing/earnings")
@endpoint(Access.therapist)
async def get_earnings(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    ctx = _billing(request)
    return json_response({"earnings": await wallet.earnings_view(ctx, principal.user_id),
                          "connect": await connect.status(ctx, principal.user_id),
                          "withdrawals": await withdrawals.list_withdrawals(ctx, therapist_id=principal.user_id,
                                                                            limit=20)})


@routes.get("/api/billing/withdrawals")
@endpoint(Access.therapist)
async def list_own_withdrawals(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    rows = await withdrawals.list_withdrawals(_billing(request), therapist_id=principal.user_id)
    return json_response({"withdrawals": rows})


@routes.post("/api/billing/withdrawals")
@endpoint(Access.therapist)
async def request_withdrawal(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    body = await read_json(request)
    created = await withdrawals.request_withdrawal(_billing(request), principal, body,
                                                   request.headers.get(IDEMPOTENCY_HEADER))
    return json_response(created, status=201)


@routes.post("/api/billing/withdrawals/{id}/cancel")
@endpoint(Access.therapist)
async def cancel_own_withdrawal(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response(await withdrawals.cancel(_billing(request), principal, path_id(request)))


@routes.get("/api/billing/connect")
@endpoint(Access.therapist)
async def connect_status(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response({"connect": await connect.status(_billing(request), principal.user_id)})


@routes.post("/api/billing/connect/onboarding")
@endpoint(Access.approved_therapist)
async def connect_onboarding(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response({"connect": await connect.start_onboarding(_billing(request), principal)})


# ---------------------------------------------------------------- Stripe


@routes.post("/api/billing/stripe/webhook")
@endpoint(Access.public)
async def stripe_webhook(request: web.Request, _: Principal | None) -> web.Response:
    """Authenticated by its Stripe signature, not by a user."""
    payload = await read_body(request, webhooks.MAX_PAYLOAD_BYTES, "a webhook")
    return json_response(await webhooks.receive(_billing(request), payload, request.headers.get("Stripe-Signature")))


# ---------------------------------------------------------------- admins


@routes.get("/api/admin/billing/withdrawals")
@endpoint(Access.admin)
async def admin_withdrawals(request: web.Request, _: Principal | None) -> web.Response:
    only_fields(request.query, {"status"})
    rows = await withdrawals.list_withdrawals(_billing(request), status=request.query.get("status"))
    return json_response({"withdrawals": rows})


@routes.post("/api/admin/billing/withdrawals/{id}/invoice-received")
@endpoint(Access.admin)
async def admin_invoice_received(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response(await withdrawals.invoice_received(_billing(request), principal, path_id(request)))


@routes.post("/api/admin/billing/withdrawals/{id}/pay")
@endpoint(Access.admin)
async def admin_pay(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    body = await read_json(request)
    return json_response(await withdrawals.pay(_billing(request), principal, path_id(request), body))


@routes.post("/api/admin/billing/withdrawals/{id}/cancel")
@endpoint(Access.admin)
async def admin_cancel_withdrawal(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response(await withdrawals.cancel(_billing(request), principal, path_id(request)))


@routes.get("/api/admin/billing/calls/{id}")
@endpoint(Access.admin)
async def admin_call_charges(request: web.Request, _: Principal | None) -> web.Response:
    return json_response(await refunds.call_summary(_billing(request), path_id(request)))


@routes.post("/api/admin/billing/calls/{id}/refunds")
@endpoint(Access.admin)
async def admin_refund_call(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    body = await read_json(request)
    refunded = await refunds.refund_call(_billing(request), principal, path_id(request), body,
                                         request.headers.get(IDEMPOTENCY_HEADER))
    return json_response(refunded)


@routes.get("/api/admin/billing/disputes")
@endpoint(Access.admin)
async def admin_disputes(request: web.Request, _: Principal | None) -> web.Response:
    only_fields(request.query, {"status"})
    return json_response({"disputes": await disputes.list_disputes(_billing(request), request.query.get("status"))})


@routes.post("/api/admin/billing/clients/{id}/credits")
@endpoint(Access.admin)
async def admin_credit(request: web.Request, principal: Principal | None) -> web.Response:
    """Credit a client's wallet without a card payment (goodwill, support, load tests); `Idempotency-Key` required."""
    assert principal is not None
    body = await read_json(request)
    only_fields(body, {"amount_pence", "memo"})
    ctx = _billing(request)
    amount = parse_amount(body, "amount_pence", minimum=1, maximum=ctx.settings.billing_wallet_max_pence)
    memo = text(body, "memo", max_len=200, required=False, min_len=0) or "credit by an admin"
    key = topups.client_key_of(request.headers.get(IDEMPOTENCY_HEADER) or "")
    balance = await wallet.credit_client(ctx, principal, path_id(request), amount, key=key, memo=memo)
    return json_response({"client_id": path_id(request), "balance_pence": balance}, status=201)
