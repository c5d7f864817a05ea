"""Stripe Connect: a therapist's Express account, its onboarding link, and whether Stripe lets us pay out to it
(kept in sync by the `account.updated` webhook). A therapist without a ready account is paid by bank transfer."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from accounts.principal import Principal
from billing import ledger
from billing.context import BillingContext
from billing.models import ConnectAccount
from core.audit import record_audit
from core.errors import Invalid, Unavailable
from core.logging import get_logger

log = get_logger("billing")


def connect_view(row: ConnectAccount | None) -> dict[str, Any]:
    if row is None:
        return {"account": None, "ready": False}
    return {"account": row.stripe_account_id, "details_submitted": row.details_submitted,
            "payouts_enabled": row.payouts_enabled, "ready": is_ready(row)}


def is_ready(row: ConnectAccount | None) -> bool:
    return row is not None and row.details_submitted and row.payouts_enabled


async def status(ctx: BillingContext, therapist_id: int) -> dict[str, Any]:
    async with ctx.db.session() as session:
        return connect_view(await session.get(ConnectAccount, therapist_id))


def _account_key(user: User) -> str:
    """The same for every attempt for this user (two clicks make one account), and different for a user of another
    database (test runs, a restored copy) using the same Stripe account."""
    seed = f"{user.id}:{user.email}:{user.created_at.isoformat()}".encode()
    return "connect-account-" + hashlib.sha256(seed).hexdigest()[:32]


async def start_onboarding(ctx: BillingContext, principal: Principal) -> dict[str, Any]:
    """Create the therapist's Express account (once) and a fresh onboarding link to Stripe's hosted pages."""
    if ctx.stripe is None:
        raise Unavailable("Stripe is not configured on this server", code="payments_unavailable")
    async with ctx.db.session() as session:
        row = await session.get(ConnectAccount, principal.user_id)
        user = await session.get(User, principal.user_id)
    assert user is not None
    if row is None:
        account = await ctx.stripe.create_express_account(
            email=user.email, metadata={"therapist_id": str(user.id)}, key=_account_key(user))

        async def record(session: AsyncSession) -> ConnectAccount:
            existing = await session.get(ConnectAccount, user.id)
            if existing is not None:
                return existing
            now = ctx.clock.now()
            created = ConnectAccount(therapist_id=user.id, stripe_account_id=account, details_submitted=False,
                                     payouts_enabled=False, created_at=now, updated_at=now)
            session.add(created)
            record_audit(session, at=now, actor_id=user.id, action="billing.connect_created",
                         subject_type="connect_account", subject_id=user.id)
            return created

        row = await ledger.run_once(ctx.db, record)
    base = ctx.settings.effective_public_url
    url = await ctx.stripe.account_link(account=row.stripe_account_id, refresh_url=f"{base}/dashboard?connect=refresh",
                                        return_url=f"{base}/dashboard?connect=done")
    log.info("billing.connect_link", therapist_id=user.id)
    return {**connect_view(row), "onboarding_url": url}


async def account_updated(session: AsyncSession, ctx: BillingContext, obj: dict[str, Any], pushes: list[Any]) -> None:
    account_id = obj.get("id")
    row = await session.scalar(select(ConnectAccount).where(ConnectAccount.stripe_account_id == account_id)
                               .with_for_update()) if isinstance(account_id, str) else None
    if row is None:
        raise Invalid("no therapist has this connected account", code="unknown_account")
    row.details_submitted = obj.get("details_submitted") is True
    row.payouts_enabled = obj.get("payouts_enabled") is True
    row.updated_at = ctx.clock.now()
    record_audit(session, at=row.updated_at, actor_id=None, action="billing.connect_updated",
                 subject_type="connect_account", subject_id=row.therapist_id, fields=["details_submitted", "payouts_enabled"])
    pushes.append((row.therapist_id, "billing.connect", connect_view(row)))
