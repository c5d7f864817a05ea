"""The race: a therapist accepts a request; exactly one accept per round wins.

The claim store decides (one Redis script, or one uninterrupted step in process) so losers are answered without
touching the database; the winner's offer is then recorded by a conditional UPDATE that refuses to overwrite a
round already decided, so the database stays the record even if the claim store forgot (a restart).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import exists, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import ApplicationStatus, TherapistProfile, User
from accounts.principal import Principal
from core.errors import AppError, Conflict, Forbidden, NotFound
from core.logging import get_logger
from core.validation import integer, only_fields
from pool.claims import ClaimResult
from pool.context import PoolContext
from pool.dashboard import refresh_dashboard
from pool.eligibility import busy_with, matches, not_busy, require_may_take
from pool.models import OfferOutcome, PoolOffer, PoolRequest, RequestStatus
from pool.offers import publish_to_client
from pool.representation import for_therapist
from pool.states import RequestState
from pool.transitions import declined_by

log = get_logger("pool")


def _state_error(req: PoolRequest) -> AppError:
    if req.status is RequestStatus.expired:
        return Conflict("this request has expired", code="expired")
    if req.status is RequestStatus.cancelled:
        return NotFound("the client withdrew this request", code="not_found")
    return Conflict("another therapist accepted this request first", code="taken")


class Recorder:
    """Writes the winner's offer; a separate object so a test can swap in a careless one and watch the race test fail."""

    async def record(self, ctx: PoolContext, request_id: int, round: int, therapist_id: int) -> PoolRequest:
        """One conditional UPDATE decides (the round still open and unexpired, the therapist approved, available and
        neither in a call nor holding an offer): the winner's ack waits on few database round trips. When it changes
        nothing, the rows are read again to say why."""
        now = ctx.clock.now()
        async with ctx.db.transaction() as session:
            offered = await session.scalar(
                update(PoolRequest)
                .where(
                    PoolRequest.id == request_id, PoolRequest.round == round,
                    PoolRequest.status == RequestStatus.open, PoolRequest.expires_at > now,
                    exists().where(TherapistProfile.user_id == therapist_id,
                                   TherapistProfile.status == ApplicationStatus.approved,
                                   TherapistProfile.available.is_(True)),
                    not_busy(therapist_id),
                )
                .values(status=RequestStatus.offered, offered_to=therapist_id,
                        offer_expires_at=now + timedelta(seconds=ctx.settings.offer_ttl_s))
                .returning(PoolRequest)
                .execution_options(synchronize_session=False)
            )
            if offered is None:
                raise await self._why_not(session, request_id, round, therapist_id, now)
            session.add(PoolOffer(request_id=offered.id, round=offered.round, therapist_id=therapist_id,
                                  offered_at=now, outcome=OfferOutcome.pending))
            return offered

    @staticmethod
    async def _why_not(session: AsyncSession, request_id: int, round: int, therapist_id: int, now: datetime) -> AppError:
        fresh = await session.get(PoolRequest, request_id)
        if fresh is None:
            return NotFound("there is no such request", code="not_found")
        if fresh.status is not RequestStatus.open:
            return _state_error(fresh)
        if fresh.round != round:
            return Conflict("another therapist accepted this request first", code="taken")
        if fresh.expires_at <= now:
            return Conflict("this request has expired", code="expired")
        profile = await session.get(TherapistProfile, therapist_id)
        if profile is None or profile.status is not ApplicationStatus.approved or not profile.available:
            return Forbidden("you are not available for requests", code="not_available")
        if await busy_with(session, therapist_id) is not None:
            return Conflict("finish your current offer or call first", code="busy")
        return Conflict("another therapist accepted this request first", code="taken")  # changed meanwhile


RECORDER = Recorder()


async def _check_slowly(ctx: PoolContext, principal: Principal, request_id: int) -> RequestState:
    """Read the request and the therapist from the database (and remember both for the next accepts)."""
    async with ctx.db.session() as session:
        req = await session.get(PoolRequest, request_id)
        profile = await session.get(TherapistProfile, principal.user_id)
        if req is None:
            raise NotFound("there is no such request", code="not_found")
        if req.status is not RequestStatus.open:
            raise _state_error(req)
        declined = await declined_by(session, req.id)
    if profile is not None:
        ctx.memory.remember_profile(profile)
    require_may_take(profile, req, declined)
    return await ctx.memory.remember(req, declined)


def _check_quickly(ctx: PoolContext, principal: Principal, request_id: int) -> RequestState | None:
    """The same checks from what this process remembers; None when it does not know enough."""
    state, me = ctx.memory.request(request_id), ctx.memory.eligibility(principal.user_id)
    if state is None or me is None or not state.open:
        return None
    if not me.approved:
        raise Forbidden("your therapist application has not been approved yet", code="not_approved")
    if not me.available:
        raise Forbidden("set yourself as available to take requests", code="not_available")
    if not matches(state.expertise, me.expertise):
        raise NotFound("there is no such request", code="not_found")
    if principal.user_id in state.declined:
        raise Forbidden("the client chose someone else for this request", code="declined")
    return state


async def accept_request(ctx: PoolContext, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """A therapist's accept: `ok` with the offer for the winner; `taken`, `busy`, `expired`, ... for everyone else.
    In a race, the losers are answered from memory and the claim store alone."""
    only_fields(data, {"request_id"})
    request_id = integer(data, "request_id", minimum=1, maximum=2**62)
    state = _check_quickly(ctx, principal, request_id) or await _check_slowly(ctx, principal, request_id)

    result = await ctx.claims.claim_round(state.id, state.round, principal.user_id, ctx.round_ttl_s, ctx.offer_hold_s)
    if result is ClaimResult.taken:
        raise Conflict("another therapist accepted this request first", code="taken")
    if result is ClaimResult.busy:
        raise Conflict("finish your current offer or call first", code="busy")

    try:
        offered = await RECORDER.record(ctx, state.id, state.round, principal.user_id)
    except BaseException:
        # Refused, or not recorded at all (a database error): either way the round is still open in the database,
        # so the claim must not stand, or every later accept would be `taken` and the client could not withdraw.
        await ctx.claims.release(principal.user_id, f"offer:{state.id}")
        await ctx.claims.release_round(state.id, state.round, f"therapist:{principal.user_id}")
        raise
    log.info("pool.claimed", request_id=state.id, round=state.round, therapist_id=principal.user_id)
    # The winner's ack goes out first; every dashboard drops the request and the client sees the offer right after.
    asyncio.get_running_loop().create_task(_announce(ctx, offered, state, principal.user_id))
    async with ctx.db.session() as session:
        client = await session.get(User, offered.client_id)
    assert client is not None and offered.offer_expires_at is not None
    return {"offer": {"request": for_therapist(offered, client, ctx.keyring),
                      "expires_at": offered.offer_expires_at.isoformat()}}


async def _announce(ctx: PoolContext, offered: PoolRequest, state: RequestState, therapist_id: int) -> None:
    try:
        await ctx.broadcast.to_dashboards((), "pool.request_removed", {"request_id": state.id, "reason": "taken"})
        await ctx.memory.remember(offered, state.declined)
        await refresh_dashboard(ctx, therapist_id)  # busy now: out of the pool until the offer or the call ends
        await publish_to_client(ctx, offered)
    except Exception:  # noqa: BLE001 - the offer stands; the client can still ask with pool.state
        log.exception("pool.announce_failed", request_id=state.id)
