"""Joining, dropping out of, rejoining and ending a call. The state lives in the database (not in a process), so a
member whose server process restarted rejoins through any other process and the call carries on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.principal import Principal
from calls.context import CallsContext
from calls.models import Call, CallKind, CallMember, CallStatus
from calls.policy import require_member, require_open
from core.errors import Forbidden, NotFound
from core.logging import get_logger
from core.validation import integer

log = get_logger("calls")


def call_id_of(data: Mapping[str, Any]) -> int:
    return integer(data, "call_id", minimum=1, maximum=2**62)


@dataclass
class Joined:
    call: Call
    member: CallMember
    other: CallMember
    rejoined: bool
    replaced_sid: str | None


async def load_call(ctx: CallsContext, call_id: int) -> Call | None:
    async with ctx.db.session() as session:
        return await session.get(Call, call_id)


async def _open_call_locked(session: AsyncSession, principal: Principal, call_id: int) -> tuple[Call, CallMember]:
    """The open call, row-locked for this transaction, and the principal's place in it (or the error why not)."""
    call = await session.get(Call, call_id, with_for_update=True)
    member = require_member(call, principal)
    assert call is not None
    require_open(call)
    return call, member


async def join(ctx: CallsContext, principal: Principal, call_id: int, sid: str) -> Joined:
    """Take (or take back) the member's place in the call with this connection."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        call, member = await _open_call_locked(session, principal, call_id)
        other = call.other_member(principal.user_id)
        assert other is not None
        replaced = member.sid if member.sid and member.sid != sid else None
        rejoined = member.joins > 0
        if member.sid != sid:
            _media_lost(member, now)  # a new window builds a new peer connection
        member.sid, member.away_since, member.joins = sid, None, member.joins + 1
        member.joined_at = member.joined_at or now
        if call.started_at is None and other.joined_at is not None and other.sid is not None:
            call.started_at = now
    log.info("call.joined", call_id=call_id, role=member.role, rejoined=rejoined)
    return Joined(call, member, other, rejoined, replaced)


async def connection_lost(ctx: CallsContext, user_id: int, sid: str) -> list[tuple[Call, CallMember]]:
    """The connection holding a member's place closed: they are away from now (the grace period starts)."""
    now = ctx.clock.now()
    affected = []
    async with ctx.db.transaction() as session:
        rows = (await session.execute(
            select(CallMember, Call).join(Call, Call.id == CallMember.call_id).where(
                CallMember.user_id == user_id, CallMember.sid == sid, Call.status == CallStatus.open
            )
        )).all()
        for member, call in rows:
            member.sid, member.away_since = None, now
            _media_lost(member, now)
            affected.append((call, member))
    for call, member in affected:
        log.info("call.member_away", call_id=call.id, role=member.role)
    return affected


def _media_lost(member: CallMember, now: datetime) -> None:
    if member.media_connected_since is not None:
        member.media_connected_since, member.media_lost_at = None, now


async def report_media(ctx: CallsContext, principal: Principal, call_id: int, sid: str, connected: bool) -> Call:
    """The member's browser says whether its peer connection to the other member is connected (it reports every
    change). Only the window holding the member's place may report."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        call, member = await _open_call_locked(session, principal, call_id)
        if member.sid != sid:
            raise Forbidden("join the call from this window first", code="not_joined")
        if not connected:
            _media_lost(member, now)
        elif member.media_connected_since is None:
            member.media_connected_since = now
    log.info("call.media_state", call_id=call_id, role=member.role, connected=connected)
    return call


async def end_call(ctx: CallsContext, call_id: int, *, ended_by: int | None, reason: str) -> Call | None:
    """End the call for both (once); None if it had already ended."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        call = await session.get(Call, call_id, with_for_update=True)
        if call is None or call.status is not CallStatus.open:
            return None
        call.status, call.ended_at, call.ended_by, call.end_reason = CallStatus.ended, now, ended_by, reason
        for member in call.members:
            member.sid = None
    log.info("call.ended", call_id=call_id, reason=reason)
    return call


async def hang_up(ctx: CallsContext, principal: Principal, call_id: int) -> Call:
    call = await load_call(ctx, call_id)
    require_member(call, principal)
    assert call is not None
    require_open(call)
    ended = await end_call(ctx, call_id, ended_by=principal.user_id, reason="hangup")
    if ended is None:
        raise NotFound("this call has ended", code="call_ended")
    return ended


@dataclass(frozen=True)
class Overdue:
    """An open call that must end now, why (`dropped`, `no_show`), and the member whose absence ends it (None: both
    never came)."""

    call_id: int
    reason: str
    member_id: int | None


async def overdue(ctx: CallsContext) -> list[Overdue]:
    """Open calls that must end now: a member away past the grace period (`dropped`), or a member who never joined
    within the join timeout of the call's opening (`no_show`). Members whose every connection vanished without a
    goodbye (a crashed process) are marked away first."""
    now = ctx.clock.now()
    grace = timedelta(seconds=ctx.settings.call_rejoin_grace_s)
    join_timeout = {kind: timedelta(seconds=ctx.settings.call_join_timeout_s) for kind in CallKind}
    join_timeout[CallKind.test] = timedelta(seconds=ctx.settings.call_test_join_timeout_s)
    async with ctx.db.session() as session:
        calls = (await session.execute(select(Call).where(Call.status == CallStatus.open))).scalars().all()
    present = [m for call in calls for m in call.members if m.sid is not None]
    online = await ctx.presence.online({m.user_id for m in present})
    vanished = [m for m in present if m.user_id not in online]
    if vanished:
        async with ctx.db.transaction() as session:
            for m in vanished:
                row = await session.get(CallMember, (m.call_id, m.user_id))
                if row is not None and row.sid == m.sid:
                    row.sid, row.away_since = None, now
    due = []
    for call in calls:
        away = sorted((m for m in call.members if m.away_since is not None and m.away_since + grace <= now),
                      key=lambda m: m.away_since or now)
        never = [m for m in call.members if m.joins == 0]
        if away:
            due.append(Overdue(call.id, "dropped", away[0].user_id))
        elif never and call.created_at + join_timeout[call.kind] <= now:
            due.append(Overdue(call.id, "no_show", never[0].user_id if len(never) == 1 else None))
    return sorted(due, key=lambda d: d.call_id)


async def withdraw_recording(ctx: CallsContext, principal: Principal, call_id: int) -> tuple[Call, CallMember]:
    """Recording and transcription stop for both members from now; the call itself goes on."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        call, member = await _open_call_locked(session, principal, call_id)
        if call.recording_consent:
            call.recording_consent = False
            call.recording_withdrawn_at, call.recording_withdrawn_by = now, principal.user_id
    log.info("call.recording_withdrawn", call_id=call_id, role=member.role)
    return call, member
