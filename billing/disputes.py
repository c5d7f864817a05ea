"""Card disputes (chargebacks) on top-ups.

`charge.dispute.created` freezes the disputed amount in the client's wallet (moved to their `client_frozen` account;
at most what the wallet holds: the rest may already be spent). `charge.dispute.closed` releases it when the dispute is
won, and when it is lost sends the frozen money back out through card clearing, the platform bearing any part that had
already been spent. Admins see every dispute.
"""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger
from billing.context import BillingContext
from billing.models import Dispute, DisputeStatus, TopUp
from core.audit import record_audit
from core.errors import Invalid
from core.logging import get_logger

log = get_logger("billing")


def dispute_view(row: Dispute) -> dict[str, Any]:
    return {"id": row.id, "topup_id": row.topup_id, "client_id": row.client_id, "amount_pence": row.amount_pence,
            "frozen_pence": row.frozen_pence, "reason": row.reason, "status": row.status.value,
            "created_at": row.created_at.isoformat(), "closed_at": row.closed_at.isoformat() if row.closed_at else None}


def _id_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else None


async def _topup_for(session: AsyncSession, obj: Mapping[str, Any]) -> TopUp:
    intent, charge = _id_of(obj.get("payment_intent")), _id_of(obj.get("charge"))
    conditions = []
    if intent:
        conditions.append(TopUp.payment_intent_id == intent)
    if charge:
        conditions.append(TopUp.charge_id == charge)
    row = await session.scalar(select(TopUp).where(or_(*conditions))) if conditions else None
    if row is None:
        raise Invalid("no top-up has this charge", code="unknown_charge")
    return row


async def dispute_created(session: AsyncSession, ctx: BillingContext, obj: dict[str, Any], pushes: list[Any]) -> None:
    dispute_id, amount = _id_of(obj), obj.get("amount")
    if not dispute_id or isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise Invalid("the dispute lacks an id or an amount", code="invalid_event")
    if await session.get(Dispute, dispute_id) is not None:
        return
    topup = await _topup_for(session, obj)
    now = ctx.clock.now()
    held = await ledger.balance(session, ledger.wallet(topup.user_id))
    freeze = min(amount, held)
    if freeze > 0:
        await ledger.post(session, key=f"dispute:{dispute_id}:freeze", kind="dispute_freeze", now=now,
                          reference=dispute_id, memo="card dispute opened",
                          legs=[(ledger.wallet(topup.user_id), -freeze), (ledger.frozen(topup.user_id), freeze)])
    session.add(Dispute(id=dispute_id, topup_id=topup.id, client_id=topup.user_id, amount_pence=amount,
                        frozen_pence=freeze, reason=str(obj.get("reason") or "")[:64], status=DisputeStatus.open,
                        created_at=now))
    record_audit(session, at=now, actor_id=None, action="billing.dispute_opened", subject_type="dispute",
                 subject_id=dispute_id, fields=["frozen_pence"])
    log.warning("billing.dispute_opened", topup_id=topup.id, pence=amount, frozen=freeze)
    pushes.append((topup.user_id, "billing.balance", {"balance_pence": held - freeze}))


async def dispute_closed(session: AsyncSession, ctx: BillingContext, obj: dict[str, Any], pushes: list[Any]) -> None:
    dispute_id = _id_of(obj)
    row = await session.get(Dispute, dispute_id, with_for_update=True) if dispute_id else None
    if row is None:
        raise Invalid("no open dispute has this id", code="unknown_dispute")
    if row.status is not DisputeStatus.open:
        return
    now = ctx.clock.now()
    won = obj.get("status") == "won"
    freeze = await ledger.find(session, f"dispute:{row.id}:freeze")
    if won:
        if freeze is not None:
            await ledger.reverse(session, freeze, key=f"dispute:{row.id}:release", kind="dispute_release", now=now,
                                 memo="card dispute won")
    else:
        legs: list[tuple[ledger.Account, int]] = [(ledger.CARD_CLEARING, row.amount_pence)]
        if row.frozen_pence:
            legs.append((ledger.frozen(row.client_id), -row.frozen_pence))
        if row.amount_pence > row.frozen_pence:
            legs.append((ledger.PLATFORM, row.frozen_pence - row.amount_pence))
        await ledger.post(session, key=f"dispute:{row.id}:lost", kind="dispute_lost", now=now, reference=row.id,
                          memo="card dispute lost", legs=legs)
    row.status, row.closed_at = (DisputeStatus.won if won else DisputeStatus.lost), now
    record_audit(session, at=now, actor_id=None, action=f"billing.dispute_{row.status.value}", subject_type="dispute",
                 subject_id=row.id)
    pushes.append((row.client_id, "billing.balance",
                   {"balance_pence": await ledger.balance(session, ledger.wallet(row.client_id))}))


async def list_disputes(ctx: BillingContext, status: str | None = None) -> list[dict[str, Any]]:
    query = select(Dispute).order_by(Dispute.created_at.desc())
    if status:
        try:
            query = query.where(Dispute.status == DisputeStatus(status))
        except ValueError:
            raise Invalid("status must be open, won or lost", details={"field": "status"}) from None
    async with ctx.db.session() as session:
        return [dispute_view(r) for r in (await session.scalars(query.limit(500))).all()]
