"""What a therapist's dashboard shows on (re)connect: the open requests they may take and their own offers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from accounts.models import TherapistProfile, User
from accounts.principal import Principal
from pool.context import PoolContext
from pool.eligibility import matches
from pool.models import OfferOutcome, PoolOffer, PoolRequest, RequestStatus
from pool.representation import for_therapist


async def therapist_snapshot(ctx: PoolContext, principal: Principal) -> dict[str, Any]:
    now = ctx.clock.now()
    async with ctx.db.session() as session:
        profile = await session.get(TherapistProfile, principal.user_id)
        assert profile is not None
        declined = set(await session.scalars(
            select(PoolOffer.request_id).where(PoolOffer.therapist_id == principal.user_id,
                                               PoolOffer.outcome == OfferOutcome.declined)
        ))
        rows = (await session.execute(
            select(PoolRequest, User).join(User, User.id == PoolRequest.client_id).where(
                (PoolRequest.status == RequestStatus.open) & (PoolRequest.expires_at > now)
                | (PoolRequest.status == RequestStatus.offered) & (PoolRequest.offered_to == principal.user_id)
            ).order_by(PoolRequest.created_at)
        )).all()
    requests, offers = [], []
    for req, client in rows:
        if req.status is RequestStatus.offered:
            assert req.offer_expires_at is not None
            offers.append({"request": for_therapist(req, client, ctx.keyring), "expires_at": req.offer_expires_at.isoformat()})
        elif req.id not in declined and matches(req.expertise, profile.expertise):
            requests.append(for_therapist(req, client, ctx.keyring))
    held = (await ctx.claims.holding([principal.user_id])).get(principal.user_id)
    return {
        "available": profile.available,
        "busy": held.split(":", 1)[0] if held else None,
        "requests": requests,
        "offers": offers,
    }
