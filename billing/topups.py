"""Top-ups: the client picks an amount, we create a Stripe PaymentIntent (with the top-up's idempotency key), the browser
confirms the card with Stripe's own library, and the `payment_intent.succeeded` webhook credits the wallet, once
(`billing.webhooks`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.principal import Principal
from billing import ledger
from billing.context import BillingContext
from billing.models import TopUp, TopUpStatus
from core.audit import record_audit
from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.logging import get_logger
from core.validation import integer, only_fields

log = get_logger("billing")
MAX_CLIENT_KEY = 64


def topup_view(row: TopUp) -> dict[str, Any]:
    return {
        "id": row.id, "amount_pence": row.amount_pence, "status": row.status.value,
        "failure_code": row.failure_code, "failure_message": row.failure_message,
        "refunded_pence": row.refunded_pence,
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }


def parse_amount(data: Mapping[str, Any], field: str, *, minimum: int, maximum: int) -> int:
    """A whole number of pence within bounds: negative, zero, fractional, string or huge amounts are `invalid`."""
    return integer(data, field, minimum=minimum, maximum=maximum)


def client_key_of(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_CLIENT_KEY or not key.isprintable():
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_CLIENT_KEY} printable characters", code="invalid",
                      details={"field": "Idempotency-Key"})
    return key


async def create_topup(ctx: BillingContext, principal: Principal, data: Mapping[str, Any],
                       idempotency_key: str | None = None) -> dict[str, Any]:
    """Start a top-up: returns the top-up and the PaymentIntent's client secret for Stripe.js."""
    only_fields(data, {"amount_pence"})
    s = ctx.settings
    amount = parse_amount(data, "amount_pence", minimum=s.billing_topup_min_pence, maximum=s.billing_topup_max_pence)
    client_key = client_key_of(idempotency_key)
    if ctx.stripe is None:
        raise Unavailable("card payments are not configured on this server", code="payments_unavailable")
    now = ctx.clock.now()

    async def record(session: AsyncSession) -> tuple[TopUp, bool]:
        if client_key is not None:
            existing = await session.scalar(select(TopUp).where(TopUp.user_id == principal.user_id,
                                                                TopUp.client_key == client_key))
            if existing is not None:
                if existing.amount_pence != amount:
                    raise Conflict("this Idempotency-Key was used for another amount", code="idempotency_mismatch")
                return existing, False
        held = await ledger.balance(session, ledger.wallet(principal.user_id))
        if held + amount > s.billing_wallet_max_pence:
            raise Conflict("this would take the wallet over its limit", code="wallet_limit",
                           details={"balance_pence": held, "max_pence": s.billing_wallet_max_pence})
        row = TopUp(user_id=principal.user_id, amount_pence=amount, status=TopUpStatus.creating, client_key=client_key,
                    stripe_key=f"topup-{uuid.uuid4().hex}", refunded_pence=0, created_at=now, updated_at=now)
        session.add(row)
        await session.flush()
        return row, True

    row, new = await ledger.run_once(ctx.db, record)
    if not new and row.payment_intent_id and row.client_secret:
        return {"topup": topup_view(row), "client_secret": row.client_secret, **ctx.stripe.public_config()}
    try:
        intent = await ctx.stripe.create_payment_intent(
            amount_pence=amount, key=row.stripe_key,
            metadata={"topup_id": str(row.id), "user_id": str(principal.user_id)})
    except (Invalid, Unavailable) as err:
        await _mark(ctx, row.id, TopUpStatus.failed, code=err.code, message=err.message, only_from=(TopUpStatus.creating,))
        raise
    row = await _attach_intent(ctx, row.id, intent.id, intent.client_secret)
    log.info("billing.topup_created", topup_id=row.id, pence=amount)
    return {"topup": topup_view(row), "client_secret": intent.client_secret, **ctx.stripe.public_config()}


async def _attach_intent(ctx: BillingContext, topup_id: int, intent_id: str, client_secret: str) -> TopUp:
    async def work(session: AsyncSession) -> TopUp:
        row = await session.get(TopUp, topup_id, with_for_update=True)
        assert row is not None
        if row.payment_intent_id is None:
            row.payment_intent_id, row.client_secret = intent_id, client_secret
            if row.status is TopUpStatus.creating:
                row.status = TopUpStatus.pending
            row.updated_at = ctx.clock.now()
        return row

    return await ledger.run_once(ctx.db, work)


async def _mark(ctx: BillingContext, topup_id: int, status: TopUpStatus, *, code: str, message: str,
                only_from: tuple[TopUpStatus, ...]) -> None:
    async with ctx.db.transaction() as session:
        row = await session.get(TopUp, topup_id, with_for_update=True)
        if row is not None and row.status in only_from:
            row.status, row.failure_code, row.failure_message = status, code, message[:200]
            row.updated_at = ctx.clock.now()


async def get_topup(ctx: BillingContext, principal: Principal, topup_id: int) -> dict[str, Any]:
    async with ctx.db.session() as session:
        row = await session.get(TopUp, topup_id)
    if row is None or row.user_id != principal.user_id:
        raise NotFound("there is no such top-up", code="not_found")
    return {"topup": topup_view(row)}


async def list_topups(ctx: BillingContext, user_id: int, limit: int = 50) -> list[dict[str, Any]]:
    async with ctx.db.session() as session:
        rows = (await session.scalars(select(TopUp).where(TopUp.user_id == user_id).order_by(TopUp.id.desc())
                                      .limit(limit))).all()
    return [topup_view(r) for r in rows]


# ---------------------------------------------------------------- webhook handlers (inside the event's transaction)


async def _topup_of(session: AsyncSession, intent: Mapping[str, Any]) -> TopUp:
    """The top-up a PaymentIntent event is about: by the intent's id, or by the `topup_id` in its metadata (when our
    process stopped between creating the intent and recording its id)."""
    intent_id = intent.get("id")
    row = await session.scalar(select(TopUp).where(TopUp.payment_intent_id == intent_id).with_for_update())
    if row is None:
        meta = intent.get("metadata") or {}
        raw = meta.get("topup_id") if isinstance(meta, Mapping) else None
        if isinstance(raw, str) and raw.isdigit():
            candidate = await session.get(TopUp, int(raw), with_for_update=True)
            if candidate is not None and candidate.payment_intent_id is None and str(candidate.user_id) == str(
                    meta.get("user_id")):
                candidate.payment_intent_id = intent_id
                row = candidate
    if row is None:
        raise Invalid("no top-up has this PaymentIntent", code="unknown_payment_intent")
    return row


async def intent_succeeded(session: AsyncSession, ctx: BillingContext, intent: Mapping[str, Any],
                           now: datetime) -> TopUp | None:
    """Credit the wallet for a succeeded PaymentIntent, at most once per PaymentIntent (ledger key `topup:<pi>`).
    Returns the top-up when this delivery credited it."""
    row = await _topup_of(session, intent)
    received = intent.get("amount_received") or intent.get("amount")
    if intent.get("currency") != "gbp" or received != row.amount_pence:
        log.warning("billing.topup_amount_mismatch", topup_id=row.id)
        raise Invalid("the PaymentIntent's amount or currency is not the top-up's", code="amount_mismatch")
    posted = await ledger.post(session, key=f"topup:{row.payment_intent_id}", kind="topup", now=now,
                               reference=row.payment_intent_id, memo="top-up by card",
                               legs=[(ledger.CARD_CLEARING, -row.amount_pence), (ledger.wallet(row.user_id), row.amount_pence)])
    charge = intent.get("latest_charge")
    if isinstance(charge, Mapping):
        charge = charge.get("id")
    row.charge_id = charge if isinstance(charge, str) else row.charge_id
    if row.status is not TopUpStatus.succeeded:
        row.status, row.failure_code, row.failure_message, row.updated_at = TopUpStatus.succeeded, None, None, now
    if not posted.created:
        return None
    record_audit(session, at=now, actor_id=None, action="billing.topup_credited", subject_type="topup", subject_id=row.id,
                 fields=["amount_pence"])
    return row


async def intent_failed(session: AsyncSession, ctx: BillingContext, intent: Mapping[str, Any],
                        now: datetime) -> TopUp | None:
    """Record a failed attempt with the card's message; a top-up already credited stays credited (the failure of an
    earlier attempt can arrive after the success of a later one)."""
    row = await _topup_of(session, intent)
    if row.status is TopUpStatus.succeeded:
        return None
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    row.status = TopUpStatus.failed
    row.failure_code = str(code or "payment_failed")[:64]
    row.failure_message = str(message or "The payment did not go through. Try another card.")[:200]
    row.updated_at = now
    return row
