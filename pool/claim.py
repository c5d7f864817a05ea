"""The race: a therapist accepts a request; exactly one accept per round wins.

The claim store decides (one Redis script, or one uninterrupted step in process) so losers are answered without
touching the database; the winner's offer is then recorded by a conditional UPDATE that refuses to overwrite a
round already decided, so the database stays the record even if the claim store forgot (a restart).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

from sqlalchemy import exists, select

from accounts.models import TherapistProfile, User
from accounts.principal import Principal
from calls.models import Call, CallStatus
from core.errors import AppError, Conflict, NotFound
from core.logging import get_logger
from core.validation import integer, only_fields
from pool.claims import ClaimResult
from pool.context import PoolContext
from pool.eligibility import require_may_take
from pool.models import OfferOutcome, PoolOffer, PoolRequest, RequestStatus
from pool.offers import publish_to_client
from pool.representation import for_therapist
from pool.transitions import declined_by, move

log = get_logger("pool")


def _state_error(req: PoolRequest) -> AppError:
    if req.status is RequestStatus.expired:
        return Conflict("this request has expired", code="expired")
    if req.status is RequestStatus.cancelled:
        return NotFound("the client withdrew this request", code="not_found")
    return Conflict("another therapist accepted this request first", code="taken")


class Recorder:
    """Writes the winner's offer; a separate object so a test can swap in a careless one and watch the race test fail."""

    async def record(self, ctx: PoolContext, req: PoolRequest, therapist_id: int) -> PoolRequest:
        now = ctx.clock.now()
        async with ctx.db.transaction() as session:
            fresh = await session.get(PoolRequest, req.id)
            if fresh is None:
                raise NotFound("there is no such request", code="not_found")
            if fresh.status is not RequestStatus.open:
                raise _state_error(fresh)
            if fresh.round != req.round:
                raise Conflict("another therapist accepted this request first", code="taken")
            busy = await session.scalar(select(
                exists().where(Call.therapist_id == therapist_id, Call.status == CallStatus.open)
                | exists().where(PoolRequest.offered_to == therapist_id, PoolRequest.status == RequestStatus.offered)
            ))
            if busy:
                raise Conflict("finish your current offer or call first", code="busy")
            if not await move(session, fresh, RequestStatus.offered, offered_to=therapist_id,
                              offer_expires_at=now + timedelta(seconds=ctx.settings.offer_ttl_s)):
                raise Conflict("another therapist accepted this request first", code="taken")
            session.add(PoolOffer(request_id=fresh.id, round=fresh.round, therapist_id=therapist_id, offered_at=now,
                                  outcome=OfferOutcome.pending))
            await session.refresh(fresh)
            return fresh


RECORDER = Recorder()


async def accept_request(ctx: PoolContext, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """A therapist's accept: `ok` with the offer for the winner; `taken`, `busy`, `expired`, ... for everyone else."""
    only_fields(data, {"request_id"})
    request_id = integer(data, "request_id", minimum=1, maximum=2**62)
    async with ctx.db.session() as session:
        req = await session.get(PoolRequest, request_id)
        profile = await session.get(TherapistProfile, principal.user_id)
        if req is None:
            raise NotFound("there is no such request", code="not_found")
        if req.status is not RequestStatus.open:
            raise _state_error(req)
        require_may_take(profile, req, await declined_by(session, req.id))

    result = await ctx.claims.claim_round(req.id, req.round, principal.user_id, ctx.round_ttl_s, ctx.offer_hold_s)
    if result is ClaimResult.taken:
        raise Conflict("another therapist accepted this request first", code="taken")
    if result is ClaimResult.busy:
        raise Conflict("finish your current offer or call first", code="busy")

    try:
        offered = await RECORDER.record(ctx, req, principal.user_id)
    except AppError:
        await ctx.claims.release(principal.user_id, f"offer:{req.id}")
        await ctx.claims.release_round(req.id, req.round, f"therapist:{principal.user_id}")
        raise
    log.info("pool.claimed", request_id=req.id, round=req.round, therapist_id=principal.user_id)
    await ctx.broadcast.to_dashboards((), "pool.request_removed", {"request_id": req.id, "reason": "taken"})
    await publish_to_client(ctx, offered)
    async with ctx.db.session() as session:
        client = await session.get(User, offered.client_id)
    assert client is not None and offered.offer_expires_at is not None
    return {"offer": {"request": for_therapist(offered, client, ctx.keyring),
                      "expires_at": offered.offer_expires_at.isoformat()}}

