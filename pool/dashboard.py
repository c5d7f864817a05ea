"""What a therapist's dashboard shows on (re)connect: the open requests they may take and their own offers; and
moving their dashboards out of the pool while they are busy and back when they are free."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from accounts.models import TherapistProfile, User
from accounts.principal import Principal
from core.logging import get_logger
from pool.context import PoolContext
from pool.eligibility import busy_with, matches, pool_expertise
from pool.models import OfferOutcome, PoolOffer, PoolRequest, RequestStatus
from pool.representation import for_therapist

log = get_logger("pool")


async def therapist_snapshot(ctx: PoolContext, principal: Principal) -> dict[str, Any]:
    return await snapshot_of(ctx, principal.user_id)


async def snapshot_of(ctx: PoolContext, therapist_id: int) -> dict[str, Any]:
    """Availability, what keeps them busy, the waiting requests they may take (none while busy) and their offer."""
    now = ctx.clock.now()
    async with ctx.db.session() as session:
        profile = await session.get(TherapistProfile, therapist_id)
        assert profile is not None
        busy = await busy_with(session, therapist_id)
        declined = set(await session.scalars(
            select(PoolOffer.request_id).where(PoolOffer.therapist_id == therapist_id,
                                               PoolOffer.outcome == OfferOutcome.declined)
        ))
        waiting = (PoolRequest.status == RequestStatus.open) & (PoolRequest.expires_at > now)
        mine = (PoolRequest.status == RequestStatus.offered) & (PoolRequest.offered_to == therapist_id)
        rows = (await session.execute(
            select(PoolRequest, User).join(User, User.id == PoolRequest.client_id)
            .where(mine if busy else waiting | mine).order_by(PoolRequest.created_at)
        )).all()
    requests, offers = [], []
    for req, client in rows:
        if req.status is RequestStatus.offered:
            assert req.offer_expires_at is not None
            offers.append({"request": for_therapist(req, client, ctx.keyring), "expires_at": req.offer_expires_at.isoformat()})
        elif req.id not in declined and matches(req.expertise, profile.expertise):
            requests.append(for_therapist(req, client, ctx.keyring))
    return {"available": profile.available, "busy": busy, "requests": requests, "offers": offers}


async def refresh_dashboard(ctx: PoolContext, therapist_id: int) -> None:
    """The therapist became busy (an offer) or free (the offer or the call ended): their dashboards leave or rejoin
    the pool, then each gets a fresh `pool.snapshot` (read after the move, so no request falls between the two)."""
    try:
        async with ctx.db.session() as session:
            profile = await session.get(TherapistProfile, therapist_id)
            expertise = await pool_expertise(session, therapist_id)
        if profile is None:
            return
        await ctx.broadcast.place_dashboards(therapist_id, profile.expertise or [], in_pool=expertise is not None)
        await ctx.broadcast.to_user(therapist_id, "pool.snapshot", await snapshot_of(ctx, therapist_id))
    except Exception:  # noqa: BLE001 - what changed is recorded; a reconnect or the next change puts the rooms right
        log.exception("pool.dashboard_refresh_failed", therapist_id=therapist_id)
