"""A client's wallet and a therapist's earnings as their owners see them, the minimum balance to ask for a session,
and crediting a wallet directly through the ledger (admin grants, tests, benchmarks and the load-test tool)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from accounts.models import ApplicationStatus, Role, TherapistProfile, User
from accounts.principal import Principal
from billing import ledger
from billing.context import BillingContext
from billing.models import Withdrawal, WithdrawalStatus
from core.clock import Clock
from core.db import Database
from core.audit import record_audit
from core.errors import Conflict, NotFound
from core.settings import Settings

CURRENCY = "gbp"


async def wallet_view(ctx: BillingContext, user_id: int) -> dict[str, Any]:
    async with ctx.db.session() as session:
        found = await ledger.balances(session, [ledger.wallet(user_id), ledger.frozen(user_id)])
    return {"currency": CURRENCY, "balance_pence": found[ledger.wallet(user_id)],
            "frozen_pence": found[ledger.frozen(user_id)], "test_mode": ctx.test_mode}


async def wallet_balance(db: Database, user_id: int) -> int:
    async with db.session() as session:
        return await ledger.balance(session, ledger.wallet(user_id))


async def typical_rate(db: Database) -> int | None:
    """The median per-minute rate of the approved therapists who charge, in pence (the lower middle one of an even
    number), for "about N minutes" on a client's screens; None while no approved therapist charges."""
    charging = (TherapistProfile.status == ApplicationStatus.approved, TherapistProfile.rate_pence_per_minute > 0)
    async with db.session() as session:
        count = await session.scalar(select(func.count()).select_from(TherapistProfile).where(*charging))
        if not count:
            return None
        return await session.scalar(select(TherapistProfile.rate_pence_per_minute).where(*charging)
                                    .order_by(TherapistProfile.rate_pence_per_minute)
                                    .offset((count - 1) // 2).limit(1))


async def earnings_view(ctx: BillingContext, therapist_id: int) -> dict[str, Any]:
    accounts = [ledger.pending(therapist_id), ledger.available(therapist_id), ledger.withdrawing(therapist_id)]
    async with ctx.db.session() as session:
        found = await ledger.balances(session, accounts)
        paid = await session.scalar(select(func.coalesce(func.sum(Withdrawal.amount_pence), 0)).where(
            Withdrawal.therapist_id == therapist_id, Withdrawal.status == WithdrawalStatus.paid))
    return {
        "currency": CURRENCY,
        "pending_pence": found[accounts[0]],
        "available_pence": found[accounts[1]],
        "withdrawing_pence": found[accounts[2]],
        "paid_out_pence": int(paid or 0),
        "commission_bp": ctx.settings.billing_commission_bp,
        "test_mode": ctx.test_mode,
    }


async def require_balance_to_request(db: Database, settings: Settings, user_id: int) -> None:
    """A quick-connect request needs `billing_min_request_pence` in the wallet (when calls are charged at all)."""
    if not settings.billing_charge_calls:
        return
    held = await wallet_balance(db, user_id)
    if held < settings.billing_min_request_pence:
        raise Conflict("top up your wallet before asking for a session", code="insufficient_balance",
                       details={"balance_pence": held, "required_pence": settings.billing_min_request_pence})


async def _credit(session: Any, clock: Clock, user_id: int, amount_pence: int, key: str, memo: str,
                  actor_id: int | None) -> tuple[int, bool]:
    posted = await ledger.post(session, key=f"grant:{key}", kind="grant", now=clock.now(), actor_id=actor_id,
                               memo=memo, legs=[(ledger.CARD_CLEARING, -amount_pence), (ledger.wallet(user_id), amount_pence)])
    return await ledger.balance(session, ledger.wallet(user_id)), posted.created


async def credit_wallet(db: Database, clock: Clock, user_id: int, amount_pence: int, *, key: str,
                        memo: str = "credited outside Stripe", actor_id: int | None = None) -> int:
    """Credit a client's wallet as if they had topped up (money in through card clearing), once per `key`; returns
    the new balance. For tests, benchmarks and the load-test tool's simulated clients (and admin credits)."""

    async def work(session: Any) -> int:
        return (await _credit(session, clock, user_id, amount_pence, key, memo, actor_id))[0]

    return await ledger.run_once(db, work)


async def credit_client(ctx: BillingContext, admin: Principal, client_id: int, amount_pence: int, *, key: str,
                        memo: str) -> int:
    """An admin credits a client's wallet (goodwill, support, load tests), once per `key`; audited and pushed live."""
    async with ctx.db.session() as session:
        user = await session.get(User, client_id)
    if user is None or user.role is not Role.client:
        raise NotFound("there is no such client", code="not_found")

    async def work(session: Any) -> int:
        balance, created = await _credit(session, ctx.clock, client_id, amount_pence, f"admin:{client_id}:{key}", memo,
                                         admin.user_id)
        if created:
            record_audit(session, at=ctx.clock.now(), actor_id=admin.user_id, action="billing.wallet_credited",
                         subject_type="user", subject_id=client_id, fields=["amount_pence"])
        return balance

    balance = await ledger.run_once(ctx.db, work)
    await ctx.push(client_id, "billing.balance", {"balance_pence": balance})
    return balance
