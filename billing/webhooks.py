"""Stripe webhooks: verify the signature, then act on the event exactly once.

Each delivery runs in one database transaction that first records the event's id (`billing_stripe_events`, primary
key): a second delivery of the same event (a retry, a replay, one of many concurrent deliveries) finds it, or loses
the race on the key and is run again to find it, and changes nothing. Money moves through ledger transactions keyed
by what they are about (`topup:<PaymentIntent>`, `dispute:<id>:freeze`), so two different events about the same
payment cannot credit it twice either. Events are applied by state rules, not arrival order (a late failure of an
earlier attempt does not undo a credited top-up).

The endpoint should be subscribed to exactly the types in `HANDLED`; any other type is refused (400
`unknown_event_type`) and recorded nowhere, so a misconfigured endpoint shows up as failing deliveries in Stripe's
dashboard.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from billing import connect, disputes, ledger, topups
from billing.context import BillingContext
from billing.models import StripeEvent
from billing.stripe_client import verify_event
from billing.topups import topup_view
from core.errors import Invalid
from core.logging import get_logger

log = get_logger("billing")
MAX_PAYLOAD_BYTES = 256 * 1024
Pushes = list[tuple[int, str, dict[str, Any]]]


async def _succeeded(session: AsyncSession, ctx: BillingContext, obj: dict[str, Any], pushes: Pushes) -> None:
    row = await topups.intent_succeeded(session, ctx, obj, ctx.clock.now())
    if row is not None:
        balance = await ledger.balance(session, ledger.wallet(row.user_id))
        pushes.append((row.user_id, "billing.topup", {"topup": topup_view(row)}))
        pushes.append((row.user_id, "billing.balance", {"balance_pence": balance}))


async def _failed(session: AsyncSession, ctx: BillingContext, obj: dict[str, Any], pushes: Pushes) -> None:
    row = await topups.intent_failed(session, ctx, obj, ctx.clock.now())
    if row is not None:
        pushes.append((row.user_id, "billing.topup", {"topup": topup_view(row)}))


HANDLERS: dict[str, Callable[[AsyncSession, BillingContext, dict[str, Any], Pushes], Awaitable[None]]] = {
    "payment_intent.succeeded": _succeeded,
    "payment_intent.payment_failed": _failed,
    "charge.dispute.created": disputes.dispute_created,
    "charge.dispute.closed": disputes.dispute_closed,
    "account.updated": connect.account_updated,
}
HANDLED = frozenset(HANDLERS)


def webhook_secret(ctx: BillingContext) -> str:
    return ctx.webhook_secret or ctx.settings.stripe_webhook_secret


async def receive(ctx: BillingContext, payload: bytes, signature: str | None) -> dict[str, Any]:
    """Handle one webhook delivery; returns `{"received": true, "duplicate": bool}` or raises `Invalid`."""
    event = verify_event(payload, signature, webhook_secret(ctx), ctx.settings.stripe_webhook_tolerance_s)
    handler = HANDLERS.get(event["type"])
    if handler is None:
        raise Invalid(f"this endpoint does not take {event['type'][:64]} events", code="unknown_event_type")
    event_id, obj = event["id"][:64], event["data"]["object"]
    pushes: Pushes = []

    async def work(session: AsyncSession) -> bool:
        pushes.clear()
        if await session.get(StripeEvent, event_id) is not None:
            return True
        session.add(StripeEvent(id=event_id, type=event["type"], received_at=ctx.clock.now()))
        await session.flush()
        await handler(session, ctx, obj, pushes)
        return False

    duplicate = await ledger.run_once(ctx.db, work)
    log.info("billing.webhook", type=event["type"], duplicate=duplicate)
    for user_id, name, data in pushes:
        await ctx.push(user_id, name, data)
    return {"received": True, "duplicate": duplicate}
