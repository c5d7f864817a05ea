"""Refunds, all through the ledger.

- **A call's charge, by an admin**, in full or in part, back to the client's wallet. The therapist's share is reversed
  in proportion (cumulatively, so partial refunds that add up to the whole charge reverse exactly the whole share):
  from pending earnings if the call is not settled yet, otherwise from available earnings; whatever the therapist has
  already withdrawn is borne by the platform. The rest comes out of the platform's commission.
- **Unused balance back to the card, by the client**: taken from the wallet and refunded through Stripe against the
  client's most recent top-ups (one Stripe Refund per top-up, each with its own idempotency key); if Stripe refuses,
  the wallet is credited back.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.principal import Principal
from billing import ledger, metering
from billing.context import BillingContext
from billing.models import (CallMeter, CardRefund, Dispute, DisputeStatus, LedgerAccount, LedgerEntry,
                            LedgerTransaction, MeterStatus, TopUp, TopUpStatus)
from billing.topups import client_key_of, parse_amount
from core.audit import record_audit
from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.logging import get_logger
from core.validation import only_fields, text

log = get_logger("billing")


async def _sum(session: AsyncSession, call_id: int, account: ledger.Account, kinds: tuple[str, ...]) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_pence), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.call_id == call_id, LedgerTransaction.kind.in_(kinds), LedgerAccount.code == account.code)
    )
    return int(total or 0)


async def call_refund_state(session: AsyncSession, meter: CallMeter) -> dict[str, int]:
    charged = -await _sum(session, meter.call_id, ledger.wallet(meter.client_id), ("call_charge",))
    refunded = await _sum(session, meter.call_id, ledger.wallet(meter.client_id), ("call_refund",))
    share = await _sum(session, meter.call_id, ledger.pending(meter.therapist_id), ("call_charge",))
    return {"charged_pence": charged, "refunded_pence": refunded, "refundable_pence": charged - refunded,
            "therapist_pence": share}


async def call_summary(ctx: BillingContext, call_id: int) -> dict[str, Any]:
    """A charged call's meter and what is left to refund (admins)."""
    summary = await metering.call_charges(ctx, call_id)
    if summary is None:
        raise NotFound("this call was not charged", code="not_found")
    async with ctx.db.session() as session:
        meter = await session.get(CallMeter, call_id)
        assert meter is not None
        return {**summary, **await call_refund_state(session, meter)}


async def refund_call(ctx: BillingContext, admin: Principal, call_id: int, data: Mapping[str, Any],
                      idempotency_key: str | None = None) -> dict[str, Any]:
    only_fields(data, {"amount_pence", "reason"})
    amount = parse_amount(data, "amount_pence", minimum=1, maximum=ledger.MAX_PENCE)
    reason = text(data, "reason", max_len=200, required=False, min_len=0)
    key = client_key_of(idempotency_key) or uuid.uuid4().hex
    now = ctx.clock.now()

    async def work(session: AsyncSession) -> tuple[CallMeter, dict[str, int], bool]:
        meter = await session.get(CallMeter, call_id, with_for_update=True)
        if meter is None:
            raise NotFound("this call was not charged", code="not_found")
        txn_key = f"call:{call_id}:refund:{key}"
        existing = await ledger.find(session, txn_key)
        if existing is not None:
            wallet_leg = next(amount_ for acct, amount_ in await ledger.legs_of(session, existing)
                              if acct == ledger.wallet(meter.client_id))
            if wallet_leg != amount:
                raise Conflict("this Idempotency-Key was used for another amount", code="idempotency_mismatch")
            return meter, await call_refund_state(session, meter), False
        state = await call_refund_state(session, meter)
        if amount > state["refundable_pence"]:
            raise Conflict("that is more than is left to refund for this call", code="refund_too_large",
                           details={"refundable_pence": state["refundable_pence"]})
        charged, before = state["charged_pence"], state["refunded_pence"]
        share = (before + amount) * state["therapist_pence"] // charged - before * state["therapist_pence"] // charged
        earnings = ledger.available(meter.therapist_id) if meter.status is MeterStatus.settled else ledger.pending(
            meter.therapist_id)
        from_therapist = min(share, max(0, await ledger.balance(session, earnings)))
        legs: list[tuple[ledger.Account, int]] = [(ledger.wallet(meter.client_id), amount)]
        if from_therapist:
            legs.append((earnings, -from_therapist))
        if amount - from_therapist:
            legs.append((ledger.PLATFORM, from_therapist - amount))
        await ledger.post(session, key=txn_key, kind="call_refund", legs=legs, now=now, call_id=call_id,
                          actor_id=admin.user_id, memo=reason or f"refund for call {call_id}")
        record_audit(session, at=now, actor_id=admin.user_id, action="billing.call_refunded", subject_type="call",
                     subject_id=call_id, fields=["amount_pence"] + (["reason"] if reason else []))
        return meter, await call_refund_state(session, meter), True

    meter, _, created = await ledger.run_once(ctx.db, work)
    if created:
        log.info("billing.call_refunded", call_id=call_id, pence=amount)
        async with ctx.db.session() as session:
            balance = await ledger.balance(session, ledger.wallet(meter.client_id))
        await ctx.push(meter.client_id, "billing.balance", {"balance_pence": balance})
    return await call_summary(ctx, call_id)  # the whole summary, as GET /api/admin/billing/calls/{id} gives it


# ---------------------------------------------------------------- unused balance back to the card


async def refund_to_card(ctx: BillingContext, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    only_fields(data, {"amount_pence"})
    amount = parse_amount(data, "amount_pence", minimum=1, maximum=ledger.MAX_PENCE)
    if ctx.stripe is None:
        raise Unavailable("card payments are not configured on this server", code="payments_unavailable")
    now = ctx.clock.now()

    async def reserve(session: AsyncSession) -> list[tuple[int, str, int, str]]:
        if await ledger.balance(session, ledger.wallet(principal.user_id)) < amount:
            code, message = ledger.NON_NEGATIVE[ledger.AccountKind.client_wallet]
            raise Conflict(message, code=code)
        rows = (await session.scalars(
            select(TopUp).where(TopUp.user_id == principal.user_id, TopUp.status == TopUpStatus.succeeded,
                                TopUp.refunded_pence < TopUp.amount_pence)
            .order_by(TopUp.id.desc()).with_for_update())).all()
        disputed = set((await session.scalars(select(Dispute.topup_id).where(
            Dispute.client_id == principal.user_id, Dispute.status == DisputeStatus.open))).all())
        pieces, left = [], amount
        for row in rows:
            if left == 0:
                break
            if row.id in disputed or not row.payment_intent_id:
                continue
            piece = min(left, row.amount_pence - row.refunded_pence)
            refund = CardRefund(topup_id=row.id, user_id=principal.user_id, amount_pence=piece, status="pending",
                                stripe_key=f"card-refund-{uuid.uuid4().hex}", created_at=now)
            session.add(refund)
            await session.flush()
            await ledger.post(session, key=f"card_refund:{refund.id}", kind="card_refund", now=now,
                              reference=row.payment_intent_id, actor_id=principal.user_id, memo="refund to card",
                              legs=[(ledger.wallet(principal.user_id), -piece), (ledger.CARD_CLEARING, piece)])
            row.refunded_pence += piece
            pieces.append((refund.id, row.payment_intent_id, piece, refund.stripe_key))
            left -= piece
        if left:
            raise Conflict("only money paid in by card, and not yet refunded, can go back to the card",
                           code="refund_too_large", details={"refundable_pence": amount - left})
        record_audit(session, at=now, actor_id=principal.user_id, action="billing.card_refund_requested",
                     subject_type="user", subject_id=principal.user_id, fields=["amount_pence"])
        return pieces

    pieces = await ledger.run_once(ctx.db, reserve)
    refunded, failed = 0, 0
    for refund_id, intent, piece, stripe_key in pieces:
        try:
            stripe_id = await ctx.stripe.refund(payment_intent=intent, amount_pence=piece, key=stripe_key,
                                                metadata={"card_refund_id": str(refund_id)})
        except (Invalid, Unavailable):
            await _undo_card_refund(ctx, refund_id)
            failed += piece
            continue
        async with ctx.db.transaction() as session:
            row = await session.get(CardRefund, refund_id, with_for_update=True)
            assert row is not None
            row.status, row.stripe_refund_id = "succeeded", stripe_id
        refunded += piece
    async with ctx.db.session() as session:
        balance = await ledger.balance(session, ledger.wallet(principal.user_id))
    await ctx.push(principal.user_id, "billing.balance", {"balance_pence": balance})
    if failed and not refunded:
        raise Unavailable("the refund could not be made; your balance is unchanged", code="payment_provider_error")
    log.info("billing.card_refund", pence=refunded, failed=failed)
    return {"refunded_pence": refunded, "failed_pence": failed, "balance_pence": balance}


async def _undo_card_refund(ctx: BillingContext, refund_id: int) -> None:
    now = ctx.clock.now()

    async def work(session: AsyncSession) -> None:
        row = await session.get(CardRefund, refund_id, with_for_update=True)
        if row is None or row.status != "pending":
            return
        topup = await session.get(TopUp, row.topup_id, with_for_update=True)
        original = await ledger.find(session, f"card_refund:{row.id}")
        assert topup is not None and original is not None
        await ledger.reverse(session, original, key=f"card_refund:{row.id}:failed", kind="card_refund_failed", now=now)
        topup.refunded_pence -= row.amount_pence
        row.status = "failed"

    await ledger.run_once(ctx.db, work)
