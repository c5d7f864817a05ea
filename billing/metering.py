"""Per-minute charging of quick-connect calls.

The rule:
- **Billable time** accrues only while both members are present: each has joined the call, holds it with a live
  signalling connection (the calls domain's `CallMember.sid`) and reports its peer connection to the other as
  connected (`call.media_state`, `CallMember.media_connected_since`). It stops when either drops or reports the
  connection lost (from the moment the calls domain recorded it) and when the call ends; it starts again when both
  are back. Time comes from the injected clock.
- **Each minute is charged in advance, at its start**: when billable time reaches `n * 60 s`, minute `n + 1` is
  charged (the first as soon as both are present). Rounding is per minute of *total* billable time, so a drop and a
  rejoin inside a paid minute cost nothing extra. A minute costs the therapist's rate (read when the meter opens):
  the client's wallet is debited, the platform keeps `billing_commission_bp` of it (rounded half up to the penny) and
  the rest is credited to the therapist's pending earnings. Each minute is one ledger transaction keyed
  `call:<id>:minute:<n>`, so it is charged once whoever (which process, which hook or tick) gets there first.
- When the remaining paid time plus what the wallet can still pay is `billing_low_balance_warn_minutes` or less,
  both members get `billing.low_balance` (once per charged minute).
- When the wallet cannot pay the next minute the call ends (reason `balance_exhausted`) as the paid minute ends: the
  wallet never goes negative.
- When the call ends its pending earnings are settled (moved to available) once, key `call:<id>:settle`.
- Test calls (and every call while `billing_charge_calls` is off) are free: no meter is opened.

All of it lives in the database (`billing_call_meters`), so after a restart any process carries a call's meter on;
`tick` (run every `billing_tick_interval_s` by `MeterTicker`, and by tests after moving the clock) charges the minutes
that came due (meters whose `due_at` passed: an indexed read, however many calls run) and settles calls that ended
without their hook running; every `SWEEP_EVERY` ticks it also looks at every open meter, to stop those whose member
vanished with its process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import TherapistProfile
from billing import ledger
from billing.context import BillingContext
from billing.models import CallMeter, LedgerAccount, LedgerEntry, LedgerTransaction, MeterStatus
from calls.models import Call, CallKind, CallStatus
from core.errors import Conflict
from core.logging import get_logger
from core.tasks import cancel_and_wait

log = get_logger("billing")
MINUTE_MS = 60_000
END_REASON = "balance_exhausted"
#: Every this many ticks the ticker looks at every open meter, not only those due.
SWEEP_EVERY = 30


def split(rate_pence: int, commission_bp: int) -> tuple[int, int]:
    """(therapist's share, platform's commission) of one minute; the commission is rounded half up to the penny."""
    commission = (rate_pence * commission_bp + 5_000) // 10_000
    return rate_pence - commission, commission


@dataclass
class MeterOutcome:
    call_id: int
    client_id: int
    therapist_id: int
    rate_pence: int = 0
    minutes_charged: int = 0
    newly_charged: int = 0
    balance_pence: int | None = None
    seconds_left: int | None = None
    warn: bool = False
    exhausted: bool = False
    settled: bool = False
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


def _ms(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


def _both_present(call: Call) -> bool:
    return call.status is CallStatus.open and len(call.members) == 2 and all(
        m.sid is not None and m.media_connected_since is not None for m in call.members)


def _presence_ended(call: Call, since: datetime, now: datetime) -> datetime:
    """When both stopped being present: the earliest moment a member went away, lost its peer connection, or the call
    ended, within [since, now]."""
    moments = [m.away_since for m in call.members if m.sid is None and m.away_since is not None]
    moments += [m.media_lost_at for m in call.members if m.media_connected_since is None and m.media_lost_at is not None]
    if call.ended_at is not None:
        moments.append(call.ended_at)
    return max(since, min([*moments, now]))


async def _meter_for(session: AsyncSession, ctx: BillingContext, call: Call, now: datetime) -> CallMeter | None:
    if call.kind is not CallKind.quick_connect:
        return None
    meter = await session.get(CallMeter, call.id, with_for_update=True)
    if meter is None and call.status is CallStatus.open and ctx.settings.billing_charge_calls:
        profile = await session.get(TherapistProfile, call.therapist_id)
        meter = CallMeter(call_id=call.id, client_id=call.client_id, therapist_id=call.therapist_id,
                          rate_pence=profile.rate_pence_per_minute if profile else 0,
                          commission_bp=ctx.settings.billing_commission_bp, status=MeterStatus.open, billable_ms=0,
                          present_since=None, minutes_charged=0, warned_minute=0, created_at=now)
        session.add(meter)
        await session.flush()
    return meter


async def _charge_minute(session: AsyncSession, meter: CallMeter, minute: int, now: datetime) -> None:
    share, commission = split(meter.rate_pence, meter.commission_bp)
    legs = [(ledger.wallet(meter.client_id), -meter.rate_pence)]
    if share:
        legs.append((ledger.pending(meter.therapist_id), share))
    if commission:
        legs.append((ledger.PLATFORM, commission))
    await ledger.post(session, key=f"call:{meter.call_id}:minute:{minute}", kind="call_charge", legs=legs, now=now,
                      call_id=meter.call_id, memo=f"call {meter.call_id}, minute {minute}")


async def pending_of_call(session: AsyncSession, call_id: int, therapist_id: int) -> int:
    """What the call's transactions put into (net of what they took out of) the therapist's pending earnings."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_pence), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.call_id == call_id, LedgerAccount.code == ledger.pending(therapist_id).code)
    )
    return int(total or 0)


async def _settle(session: AsyncSession, meter: CallMeter, now: datetime) -> bool:
    amount = await pending_of_call(session, meter.call_id, meter.therapist_id)
    if amount > 0:
        await ledger.post(session, key=f"call:{meter.call_id}:settle", kind="settlement", now=now, call_id=meter.call_id,
                          legs=[(ledger.pending(meter.therapist_id), -amount), (ledger.available(meter.therapist_id), amount)],
                          memo=f"earnings of call {meter.call_id}")
    meter.status, meter.settled_at = MeterStatus.settled, now
    return True


async def _sync(session: AsyncSession, ctx: BillingContext, call_id: int) -> MeterOutcome | None:
    """Bring one call's meter up to now: accrue billable time, charge the minutes due, stop, settle."""
    now = ctx.clock.now()
    call = await session.get(Call, call_id)
    if call is None:
        return None
    meter = await _meter_for(session, ctx, call, now)
    if meter is None or meter.status is MeterStatus.settled:
        return None
    out = MeterOutcome(call.id, meter.client_id, meter.therapist_id, rate_pence=meter.rate_pence)
    present = _both_present(call) and meter.exhausted_at is None
    if meter.present_since is not None:
        until = now if present else _presence_ended(call, meter.present_since, now)
        meter.billable_ms += _ms(until - meter.present_since)
        meter.present_since = until if present else None
    elif present:
        meter.present_since = now
    due = meter.billable_ms // MINUTE_MS + 1 if present else -(-meter.billable_ms // MINUTE_MS)
    if meter.rate_pence > 0:
        for minute in range(meter.minutes_charged + 1, due + 1):
            try:
                await _charge_minute(session, meter, minute, now)
            except Conflict as err:
                if err.code != "insufficient_balance":
                    raise
                # The paid time ends here: billable time stops at the end of the last paid minute.
                paid_ms = meter.minutes_charged * MINUTE_MS
                overrun = max(0, meter.billable_ms - paid_ms)
                meter.billable_ms = min(meter.billable_ms, paid_ms)
                meter.present_since = None
                meter.exhausted_at = now - timedelta(milliseconds=overrun)
                out.exhausted = True
                break
            meter.minutes_charged = minute
            out.newly_charged += 1
    out.minutes_charged = meter.minutes_charged
    if out.newly_charged or out.exhausted:
        out.balance_pence = await ledger.balance(session, ledger.wallet(meter.client_id))
        affordable = out.balance_pence // meter.rate_pence if meter.rate_pence else 0
        paid_ahead_ms = max(0, meter.minutes_charged * MINUTE_MS - meter.billable_ms)
        out.seconds_left = 0 if out.exhausted else (paid_ahead_ms + affordable * MINUTE_MS) // 1000
        warn_s = ctx.settings.billing_low_balance_warn_minutes * 60
        if not out.exhausted and out.seconds_left <= warn_s and meter.warned_minute != meter.minutes_charged:
            meter.warned_minute = meter.minutes_charged
            out.warn = True
    meter.due_at = (meter.present_since + timedelta(milliseconds=meter.minutes_charged * MINUTE_MS - meter.billable_ms)
                    if meter.present_since is not None else None)
    if call.status is CallStatus.ended:
        out.settled = await _settle(session, meter, now)
    return out


def _events(out: MeterOutcome) -> list[tuple[int, str, dict[str, Any]]]:
    events: list[tuple[int, str, dict[str, Any]]] = []
    if out.balance_pence is not None:
        events.append((out.client_id, "billing.balance", {"balance_pence": out.balance_pence}))
        events.append((out.client_id, "billing.call", {
            "call_id": out.call_id, "minutes_charged": out.minutes_charged, "rate_pence": out.rate_pence,
            "charged_pence": out.minutes_charged * out.rate_pence, "seconds_left": out.seconds_left}))
    if out.warn:
        payload = {"call_id": out.call_id, "seconds_left": out.seconds_left,
                   "minutes_left": (out.seconds_left or 0) // 60}
        events += [(out.client_id, "billing.low_balance", payload), (out.therapist_id, "billing.low_balance", payload)]
    return events


async def _metered(ctx: BillingContext, call_id: int) -> bool:
    """Whether the call has (or is to get) an open meter: a cheap read, so free calls never take a write lock."""
    async with ctx.db.session() as session:
        status = await session.scalar(select(CallMeter.status).where(CallMeter.call_id == call_id))
        if status is not None:
            return status is MeterStatus.open
        kind = await session.scalar(select(Call.kind).where(Call.id == call_id))
    return ctx.settings.billing_charge_calls and kind is CallKind.quick_connect


async def sync_call(ctx: BillingContext, call_id: int) -> MeterOutcome | None:
    """Update one call's meter in its own transaction, then tell the members and end the call if the money ran out."""
    if not await _metered(ctx, call_id):
        return None
    out = await ledger.run_once(ctx.db, lambda session: _sync(session, ctx, call_id))
    if out is None:
        return None
    for user_id, event, payload in _events(out):
        await ctx.push(user_id, event, payload)
    if out.exhausted:
        log.info("billing.balance_exhausted", call_id=call_id, minutes=out.minutes_charged)
        await ctx.end_call(call_id, END_REASON)
    return out


async def _hook(ctx: BillingContext, call_id: int, what: str) -> None:
    try:
        await sync_call(ctx, call_id)
    except Exception:  # noqa: BLE001 - a billing failure must not break the call; the next tick tries again
        log.exception("billing.meter_failed", call_id=call_id, hook=what)


async def member_joined(ctx: BillingContext, call_id: int) -> None:
    """Calls hook: a member (re)joined; metering starts when both are present (the first minute is charged now)."""
    await _hook(ctx, call_id, "joined")


async def member_left(ctx: BillingContext, call_id: int) -> None:
    """Calls hook: a member's connection was lost; billable time stops."""
    await _hook(ctx, call_id, "left")


async def media_changed(ctx: BillingContext, call_id: int) -> None:
    """Calls hook: a member's peer connection came up or went down; billable time starts or stops."""
    await _hook(ctx, call_id, "media")


async def call_finished(ctx: BillingContext, call_id: int) -> None:
    """Calls hook: the call ended; billable time stops and the therapist's earnings are settled."""
    await _hook(ctx, call_id, "ended")


def _needs_work(meter: CallMeter, call: Call, now: datetime) -> bool:
    if call.status is CallStatus.ended:
        return True
    present = _both_present(call) and meter.exhausted_at is None
    if meter.present_since is None:
        return present
    if not present:
        return True
    billable = meter.billable_ms + _ms(now - meter.present_since)
    return billable // MINUTE_MS + 1 > meter.minutes_charged


async def tick(ctx: BillingContext, *, sweep: bool = True) -> list[MeterOutcome]:
    """Charge what came due, settle ended calls; with `sweep`, also stop meters whose member went away unannounced."""
    now = ctx.clock.now()
    query = select(CallMeter, Call).join(Call, Call.id == CallMeter.call_id).where(CallMeter.status == MeterStatus.open)
    if not sweep:
        query = query.where(or_(CallMeter.due_at <= now, Call.status == CallStatus.ended))
    async with ctx.db.session() as session:
        rows = (await session.execute(query)).all()
        todo = [meter.call_id for meter, call in rows if _needs_work(meter, call, now)]
    outcomes = []
    for call_id in todo:
        try:
            out = await sync_call(ctx, call_id)
        except Exception:  # noqa: BLE001 - one call's failure must not stop the others being charged
            log.exception("billing.tick_failed", call_id=call_id)
            continue
        if out is not None:
            outcomes.append(out)
    return outcomes


async def call_charges(ctx: BillingContext, call_id: int) -> dict[str, Any] | None:
    """What a call cost and earned so far (for the call log); None for a call without a meter (free)."""
    async with ctx.db.session() as session:
        meter = await session.get(CallMeter, call_id)
        if meter is None:
            return None
        share, _ = split(meter.rate_pence, meter.commission_bp)
        return {"call_id": call_id, "rate_pence": meter.rate_pence, "minutes_charged": meter.minutes_charged,
                "charged_pence": meter.minutes_charged * meter.rate_pence,
                "therapist_pence": meter.minutes_charged * share, "status": meter.status.value,
                "billable_s": meter.billable_ms // 1000, "ended_for_balance": meter.exhausted_at is not None}


class MeterTicker:
    """Runs `tick` every `billing_tick_interval_s` while the server runs."""

    def __init__(self, ctx: BillingContext) -> None:
        self.ctx = ctx
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.ctx.settings.billing_tick_interval_s)
            ticks += 1
            try:
                await tick(self.ctx, sweep=ticks % SWEEP_EVERY == 0)
            except Exception:  # noqa: BLE001 - keep ticking
                log.exception("billing.tick_failed")

    def start(self) -> None:
        self._task = self._task or asyncio.create_task(self._run(), name="billing-meter")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
