"""Withdrawals of a therapist's available earnings, and their payout.

1. The therapist asks for an amount: it moves from `therapist_available` to `therapist_withdrawing` in the ledger (so
   two requests racing for the same earnings cannot both have it: the second is `insufficient_earnings`), and an
   e-mail (outbox) asks for an invoice for that amount.
2. An admin marks the invoice received: the payout date is set (`billing.payouts.payout_date`: the Friday of the
   following UK week).
3. From that date an admin pays it: a Stripe Connect transfer to the therapist's ready connected account (the
   withdrawal's own idempotency key, so a retry never pays twice), or marks it paid by bank transfer. The amount moves from
   `therapist_withdrawing` to `payouts`.
Until it is paid a withdrawal can be cancelled (the therapist, before the invoice is in; an admin, any time before
payment): the request's ledger transaction is reversed. Every step is audited.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from accounts.principal import Principal
from billing import ledger, payouts
from billing.connect import is_ready
from billing.context import BillingContext
from billing.models import ConnectAccount, PayoutMethod, Withdrawal, WithdrawalStatus
from billing.topups import client_key_of, parse_amount
from core.audit import record_audit
from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.logging import get_logger
from core.validation import only_fields, text
from messaging.outbox import Channel, queue_message

log = get_logger("billing")


def pounds(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


def withdrawal_view(row: Withdrawal) -> dict[str, Any]:
    return {
        "id": row.id, "therapist_id": row.therapist_id, "amount_pence": row.amount_pence, "status": row.status.value,
        "requested_at": row.requested_at.isoformat(),
        "invoice_received_at": row.invoice_received_at.isoformat() if row.invoice_received_at else None,
        "payout_date": row.payout_date.isoformat() if row.payout_date else None,
        "method": row.method.value if row.method else None, "transfer_id": row.transfer_id,
        "bank_reference": row.bank_reference, "paid_at": row.paid_at.isoformat() if row.paid_at else None,
        "cancelled_at": row.cancelled_at.isoformat() if row.cancelled_at else None,
    }


def _invoice_email(ctx: BillingContext, row: Withdrawal, name: str) -> tuple[str, str]:
    amount = pounds(row.amount_pence)
    subject = f"Your withdrawal of {amount}: please send us your invoice"
    body = (
        f"Hello {name},\n\n"
        f"You asked to withdraw {amount} of your earnings (withdrawal W-{row.id}).\n"
        f"Please send an invoice for {amount}, quoting W-{row.id}, to {ctx.settings.billing_invoice_email}.\n"
        "Once we have received it, we release your earnings on the Friday of the following week.\n"
    )
    return subject, body


async def request_withdrawal(ctx: BillingContext, principal: Principal, data: Mapping[str, Any],
                             idempotency_key: str | None = None) -> dict[str, Any]:
    only_fields(data, {"amount_pence"})
    amount = parse_amount(data, "amount_pence", minimum=ctx.settings.billing_withdrawal_min_pence,
                          maximum=ledger.MAX_PENCE)
    client_key = client_key_of(idempotency_key)
    now = ctx.clock.now()

    async def work(session: AsyncSession) -> tuple[Withdrawal, bool]:
        if client_key is not None:
            existing = await session.scalar(select(Withdrawal).where(
                Withdrawal.therapist_id == principal.user_id, Withdrawal.client_key == client_key))
            if existing is not None:
                if existing.amount_pence != amount:
                    raise Conflict("this Idempotency-Key was used for another amount", code="idempotency_mismatch")
                return existing, False
        row = Withdrawal(therapist_id=principal.user_id, amount_pence=amount, client_key=client_key,
                         stripe_key=f"withdrawal-{uuid.uuid4().hex}", status=WithdrawalStatus.requested, requested_at=now)
        session.add(row)
        await session.flush()
        await ledger.post(session, key=f"withdrawal:{row.id}:request", kind="withdrawal", now=now,
                          reference=f"withdrawal:{row.id}", actor_id=principal.user_id, memo=f"withdrawal W-{row.id}",
                          legs=[(ledger.available(principal.user_id), -amount),
                                (ledger.withdrawing(principal.user_id), amount)])
        user = await session.get(User, principal.user_id)
        assert user is not None
        subject, body = _invoice_email(ctx, row, user.display_name)
        queue_message(session, ctx.keyring, now=now, channel=Channel.email, kind="billing.invoice_request",
                      recipient=user.email, subject=subject, body=body)
        record_audit(session, at=now, actor_id=principal.user_id, action="billing.withdrawal_requested",
                     subject_type="withdrawal", subject_id=row.id, fields=["amount_pence"])
        return row, True

    row, created = await ledger.run_once(ctx.db, work)
    if created:
        ctx.outbox_kick()
        log.info("billing.withdrawal_requested", withdrawal_id=row.id, pence=amount)
    return {"withdrawal": withdrawal_view(row)}


async def list_withdrawals(ctx: BillingContext, *, therapist_id: int | None = None, status: str | None = None,
                           limit: int = 200) -> list[dict[str, Any]]:
    query = select(Withdrawal).order_by(Withdrawal.id.desc()).limit(limit)
    if therapist_id is not None:
        query = query.where(Withdrawal.therapist_id == therapist_id)
    if status:
        try:
            query = query.where(Withdrawal.status == WithdrawalStatus(status))
        except ValueError:
            raise Invalid("status must be one of " + ", ".join(s.value for s in WithdrawalStatus),
                          details={"field": "status"}) from None
    async with ctx.db.session() as session:
        return [withdrawal_view(r) for r in (await session.scalars(query)).all()]


async def _locked(session: AsyncSession, withdrawal_id: int, therapist_id: int | None = None) -> Withdrawal:
    row = await session.get(Withdrawal, withdrawal_id, with_for_update=True)
    if row is None or (therapist_id is not None and row.therapist_id != therapist_id):
        raise NotFound("there is no such withdrawal", code="not_found")
    return row


async def _changed(ctx: BillingContext, row: Withdrawal) -> dict[str, Any]:
    view = withdrawal_view(row)
    await ctx.push(row.therapist_id, "billing.withdrawal", {"withdrawal": view})
    return {"withdrawal": view}


async def cancel(ctx: BillingContext, principal: Principal, withdrawal_id: int) -> dict[str, Any]:
    """The therapist (before the invoice is received) or an admin (before payment) cancels: the earnings return."""
    now = ctx.clock.now()

    async def work(session: AsyncSession) -> Withdrawal:
        row = await _locked(session, withdrawal_id, None if principal.is_admin else principal.user_id)
        allowed = (WithdrawalStatus.requested, WithdrawalStatus.scheduled) if principal.is_admin else (
            WithdrawalStatus.requested,)
        if row.status not in allowed:
            raise Conflict(f"a {row.status.value} withdrawal cannot be cancelled", code="withdrawal_not_cancellable")
        original = await ledger.find(session, f"withdrawal:{row.id}:request")
        assert original is not None
        await ledger.reverse(session, original, key=f"withdrawal:{row.id}:cancel", kind="withdrawal_cancelled",
                             now=now, actor_id=principal.user_id, memo=f"withdrawal W-{row.id} cancelled")
        row.status, row.cancelled_at, row.cancelled_by = WithdrawalStatus.cancelled, now, principal.user_id
        record_audit(session, at=now, actor_id=principal.user_id, action="billing.withdrawal_cancelled",
                     subject_type="withdrawal", subject_id=row.id)
        return row

    return await _changed(ctx, await ledger.run_once(ctx.db, work))


async def invoice_received(ctx: BillingContext, admin: Principal, withdrawal_id: int) -> dict[str, Any]:
    """An admin has the therapist's invoice: the payout is scheduled for the Friday of the following UK week."""
    now = ctx.clock.now()

    async def work(session: AsyncSession) -> Withdrawal:
        row = await _locked(session, withdrawal_id)
        if row.status is not WithdrawalStatus.requested:
            raise Conflict(f"the withdrawal is {row.status.value}, not waiting for its invoice", code="wrong_state")
        row.status, row.invoice_received_at, row.invoice_received_by = WithdrawalStatus.scheduled, now, admin.user_id
        row.payout_date = payouts.payout_date(now, ctx.settings.billing_payout_timezone)
        record_audit(session, at=now, actor_id=admin.user_id, action="billing.invoice_received",
                     subject_type="withdrawal", subject_id=row.id, fields=["payout_date"])
        return row

    return await _changed(ctx, await ledger.run_once(ctx.db, work))


async def pay(ctx: BillingContext, admin: Principal, withdrawal_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """Pay a scheduled withdrawal on or after its payout date: `{"method": "stripe"}` (a Connect transfer) or
    `{"method": "bank", "reference": "..."}` (already paid by bank transfer)."""
    only_fields(data, {"method", "reference"})
    raw = text(data, "method", max_len=16)
    try:
        method = PayoutMethod(raw)
    except ValueError:
        raise Invalid("method must be stripe or bank", details={"field": "method"}) from None
    reference = text(data, "reference", max_len=64, required=method is PayoutMethod.bank)
    now = ctx.clock.now()

    async def prepare(session: AsyncSession) -> tuple[Withdrawal, str | None]:
        row = await _locked(session, withdrawal_id)
        if row.status is WithdrawalStatus.paid:
            raise Conflict("this withdrawal has been paid", code="already_paid")
        if row.status not in (WithdrawalStatus.scheduled, WithdrawalStatus.paying):
            raise Conflict(f"the withdrawal is {row.status.value}, not scheduled", code="wrong_state")
        assert row.payout_date is not None
        if not payouts.is_due(row.payout_date, now, ctx.settings.billing_payout_timezone):
            raise Conflict(f"the payout is due on {row.payout_date.isoformat()}", code="not_due",
                           details={"payout_date": row.payout_date.isoformat()})
        destination = None
        if method is PayoutMethod.stripe:
            account = await session.get(ConnectAccount, row.therapist_id)
            if not is_ready(account):
                raise Conflict("the therapist's Stripe account is not ready; pay by bank transfer",
                               code="connect_not_ready")
            assert account is not None
            destination = account.stripe_account_id
            row.status, row.method = WithdrawalStatus.paying, method
        elif row.status is WithdrawalStatus.paying:
            raise Conflict("a Stripe transfer of this withdrawal is under way; retry with method stripe",
                           code="wrong_state")
        return row, destination

    row, destination = await ledger.run_once(ctx.db, prepare)
    transfer_id = None
    if destination is not None:
        if ctx.stripe is None:
            raise Unavailable("Stripe is not configured on this server", code="payments_unavailable")
        transfer_id = await ctx.stripe.transfer(amount_pence=row.amount_pence, destination=destination,
                                                metadata={"withdrawal_id": str(row.id)}, key=row.stripe_key)

    async def finish(session: AsyncSession) -> Withdrawal:
        row = await _locked(session, withdrawal_id)
        if row.status is WithdrawalStatus.paid:
            return row
        await ledger.post(session, key=f"withdrawal:{row.id}:paid", kind="payout", now=now,
                          reference=f"withdrawal:{row.id}", actor_id=admin.user_id, memo=f"withdrawal W-{row.id} paid",
                          legs=[(ledger.withdrawing(row.therapist_id), -row.amount_pence),
                                (ledger.PAYOUTS, row.amount_pence)])
        row.status, row.method, row.paid_at, row.paid_by = WithdrawalStatus.paid, method, now, admin.user_id
        row.transfer_id, row.bank_reference = transfer_id, (reference or None) if method is PayoutMethod.bank else None
        record_audit(session, at=now, actor_id=admin.user_id, action="billing.withdrawal_paid",
                     subject_type="withdrawal", subject_id=row.id, fields=["method"])
        return row

    row = await ledger.run_once(ctx.db, finish)
    log.info("billing.withdrawal_paid", withdrawal_id=row.id, method=method.value)
    return await _changed(ctx, row)
