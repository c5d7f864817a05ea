"""An offered round ends once: the client accepts (a call opens), declines, does not answer in time, withdraws the
request, or the therapist goes offline. Every ending except acceptance and withdrawal puts the request back in the pool."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from accounts.models import TherapistProfile, User
from calls.models import Call, CallKind
from calls.opening import call_summary, open_call, record_consent
from core.logging import get_logger
from pool.context import PoolContext
from pool.dashboard import refresh_dashboard
from pool.eligibility import available_therapists
from pool.models import OfferOutcome, PoolRequest, RequestStatus
from pool.representation import for_client, for_therapist
from pool.transitions import declined_by, move, pending_offer

log = get_logger("pool")


async def online_for(ctx: PoolContext, req: PoolRequest) -> int:
    """How many therapists could take this request now: approved, available, matching, not busy, connected, and not
    declined by the client for it."""
    async with ctx.db.session() as session:
        declined = set(await declined_by(session, req.id))
    candidates = [t for t in await available_therapists(ctx, req.expertise) if t not in declined]
    return len(await ctx.presence.online(candidates))


async def client_view(ctx: PoolContext, req: PoolRequest, therapists_online: int | None = None) -> dict[str, Any]:
    """The client's view of their request; for an open one, with how many therapists could come (`therapists_online`
    counted here unless given) and crisis resources when none can."""
    if req.status is RequestStatus.open and therapists_online is None:
        therapists_online = await online_for(ctx, req)
    therapist = None
    if req.status is RequestStatus.offered and req.offered_to is not None:
        async with ctx.db.session() as session:
            user = await session.get(User, req.offered_to)
            profile = await session.get(TherapistProfile, req.offered_to)
            if user is not None and profile is not None:
                therapist = (profile, user)
    return for_client(req, therapist=therapist, terms_version=ctx.settings.terms_version,
                      crisis_resources=ctx.settings.crisis_resources, therapists_online=therapists_online)


async def publish_to_client(ctx: PoolContext, req: PoolRequest, therapists_online: int | None = None) -> dict[str, Any]:
    view = await client_view(ctx, req, therapists_online)
    await ctx.broadcast.to_user(req.client_id, "pool.request_updated", {"request": view})
    return view


async def publish_to_pool(ctx: PoolContext, req: PoolRequest) -> None:
    """Show an open request on the dashboards (except to therapists the client declined)."""
    async with ctx.db.session() as session:
        client = await session.get(User, req.client_id)
        excluded = await declined_by(session, req.id)
    assert client is not None
    card = for_therapist(req, client, ctx.keyring)
    await ctx.broadcast.to_dashboards(req.expertise, "pool.request_added", {"request": card}, exclude_users=excluded)


async def end_offer(ctx: PoolContext, request_id: int, round: int, outcome: OfferOutcome) -> PoolRequest | None:
    """End an offered round with `outcome` (declined, timed_out, withdrawn, cancelled); None if it had already ended."""
    if not await ctx.claims.resolve_round(request_id, round, outcome.value, ctx.round_ttl_s):
        return None
    try:
        ended = await _record_end(ctx, request_id, round, outcome)
    except BaseException:
        # Nothing was recorded (a database error): the round must stay open to the next ending.
        await ctx.claims.unresolve_round(request_id, round, outcome.value)
        raise
    if ended is None:
        return None
    req, therapist_id, declined = ended
    await ctx.memory.remember(req, declined)
    if therapist_id is not None:
        await ctx.claims.release(therapist_id, f"offer:{request_id}")
        await ctx.broadcast.to_user(therapist_id, "pool.offer_updated", {"request_id": request_id, "outcome": outcome.value})
    log.info("pool.offer_ended", request_id=request_id, round=round, outcome=outcome.value)
    if req.status is RequestStatus.open:
        await publish_to_pool(ctx, req)
    if therapist_id is not None:
        await refresh_dashboard(ctx, therapist_id)
    await publish_to_client(ctx, req)
    return req


async def _record_end(ctx: PoolContext, request_id: int, round: int,
                      outcome: OfferOutcome) -> tuple[PoolRequest, int | None, list[int]] | None:
    """The ending in the database: (the request, its former therapist, who was declined), or None if already ended."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        req = await session.get(PoolRequest, request_id)
        if req is None or req.round != round or req.status is not RequestStatus.offered:
            return None
        therapist_id = req.offered_to
        offer = await pending_offer(session, req)
        if outcome is OfferOutcome.cancelled:
            moved = await move(session, req, RequestStatus.cancelled, closed_at=now, offered_to=None, offer_expires_at=None)
        else:
            moved = await move(session, req, RequestStatus.open, round=round + 1, offered_to=None, offer_expires_at=None)
        if not moved:
            return None
        if offer is not None:
            offer.outcome, offer.decided_at = outcome, now
        await session.flush()
        await session.refresh(req)
        return req, therapist_id, await declined_by(session, req.id)


async def accept_offer(ctx: PoolContext, req: PoolRequest, *, recording_consent: bool) -> dict[str, Any] | None:
    """The client accepts the offered therapist: record consent, open the call, tell both. None if the offer had ended."""
    if not await ctx.claims.resolve_round(req.id, req.round, OfferOutcome.accepted.value, ctx.round_ttl_s):
        return None
    try:
        opened = await _record_acceptance(ctx, req, recording_consent)
    except BaseException:
        await ctx.claims.unresolve_round(req.id, req.round, OfferOutcome.accepted.value)
        raise
    if opened is None:
        return None
    fresh, call = opened
    assert fresh.offered_to is not None
    therapist_id = fresh.offered_to
    await ctx.memory.remember(fresh, [])
    await ctx.claims.hold(therapist_id, f"call:{call.id}", ctx.settings.therapist_busy_ttl_s)
    summary = call_summary(call)
    await ctx.broadcast.to_user(therapist_id, "pool.offer_updated",
                                {"request_id": fresh.id, "outcome": OfferOutcome.accepted.value, "call": summary})
    for user_id in (therapist_id, fresh.client_id):
        await ctx.broadcast.to_user(user_id, "call.ready", {"call": summary})
    await publish_to_client(ctx, fresh)
    log.info("pool.call_opened", request_id=fresh.id, call_id=call.id)
    return summary


async def _record_acceptance(ctx: PoolContext, req: PoolRequest, recording_consent: bool) -> tuple[PoolRequest, Call] | None:
    """The call, the client's consent and the accepted offer in one transaction; None if the offer had ended."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        fresh = await session.get(PoolRequest, req.id)
        if fresh is None or fresh.round != req.round or fresh.status is not RequestStatus.offered or fresh.offered_to is None:
            return None
        call = open_call(
            session, now=now, kind=CallKind.quick_connect, therapist_id=fresh.offered_to, client_id=fresh.client_id,
            terms_version=ctx.settings.terms_version, recording_consent=recording_consent, request_id=fresh.id,
        )
        await session.flush()
        record_consent(session, call, now=now)
        if not await move(session, fresh, RequestStatus.accepted, call_id=call.id, closed_at=now):
            raise RuntimeError("request changed while its offer was being accepted")
        offer = await pending_offer(session, fresh)
        if offer is not None:
            offer.outcome, offer.decided_at, offer.terms_version = OfferOutcome.accepted, now, ctx.settings.terms_version
        await session.refresh(fresh)
        return fresh, call


async def therapist_offline(ctx: PoolContext, therapist_id: int) -> int:
    """A therapist's last connection closed: unanswered offers they hold go back to the pool."""
    async with ctx.db.session() as session:
        held = (await session.execute(
            select(PoolRequest.id, PoolRequest.round).where(
                PoolRequest.offered_to == therapist_id, PoolRequest.status == RequestStatus.offered
            )
        )).all()
    ended = 0
    for request_id, round in held:
        if await end_offer(ctx, request_id, round, OfferOutcome.withdrawn) is not None:
            ended += 1
    return ended


async def call_ended(ctx: PoolContext, therapist_id: int, call_id: int) -> None:
    """Free the therapist for the pool once their call is over: their dashboards rejoin it."""
    await ctx.claims.release(therapist_id, f"call:{call_id}")
    await refresh_dashboard(ctx, therapist_id)
