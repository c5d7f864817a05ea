"""Which therapists a request reaches, and who may act on it (authorisation beside the domain it protects)."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import select

from accounts.models import ApplicationStatus, TherapistProfile
from core.errors import Forbidden, NotFound
from pool.context import PoolContext
from pool.models import PoolRequest


def slug(expertise: str) -> str:
    return "-".join(expertise.lower().split())


def matches(request_expertise: Sequence[str], therapist_expertise: Iterable[str]) -> bool:
    """A request without preferences reaches everyone; otherwise at least one area must match."""
    if not request_expertise:
        return True
    return bool({slug(e) for e in request_expertise} & {slug(e) for e in therapist_expertise})


def require_own_request(req: PoolRequest | None, client_id: int) -> PoolRequest:
    """A client may only see and act on their own request; someone else's looks like it does not exist."""
    if req is None or req.client_id != client_id:
        raise NotFound("there is no such request", code="not_found")
    return req


def require_may_take(profile: TherapistProfile | None, req: PoolRequest, declined: Sequence[int]) -> None:
    if profile is None or profile.status is not ApplicationStatus.approved:
        raise Forbidden("your therapist application has not been approved yet", code="not_approved")
    if not profile.available:
        raise Forbidden("set yourself as available to take requests", code="not_available")
    if not matches(req.expertise, profile.expertise):
        raise NotFound("there is no such request", code="not_found")
    if profile.user_id in declined:
        raise Forbidden("the client chose someone else for this request", code="declined")


async def available_therapists(ctx: PoolContext, expertise: Sequence[str]) -> list[int]:
    """Approved therapists who set themselves available and match the request, whether online or not."""
    async with ctx.db.session() as session:
        rows = (await session.execute(
            select(TherapistProfile.user_id, TherapistProfile.expertise).where(
                TherapistProfile.status == ApplicationStatus.approved, TherapistProfile.available.is_(True)
            )
        )).all()
    candidates = [tid for tid, exp in rows if matches(expertise, exp or [])]
    held = await ctx.claims.holding(candidates)
    return [tid for tid in candidates if tid not in held]
