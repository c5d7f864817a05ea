"""Which therapists a request reaches, and who may act on it (authorisation beside the domain it protects)."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import aliased
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import ApplicationStatus, TherapistProfile
from calls.models import Call, CallStatus
from core.errors import Forbidden, NotFound
from pool.context import PoolContext
from pool.models import PoolRequest, RequestStatus


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


async def busy_with(session: AsyncSession, therapist_id: int) -> str | None:
    """What keeps the therapist from the pool, from the database (the record): `"call"` (an open call), `"offer"`
    (an offer waiting for the client's answer) or None."""
    if await session.scalar(select(Call.id).where(Call.therapist_id == therapist_id,
                                                  Call.status == CallStatus.open).limit(1)) is not None:
        return "call"
    if await session.scalar(select(PoolRequest.id).where(PoolRequest.offered_to == therapist_id,
                                                         PoolRequest.status == RequestStatus.offered).limit(1)) is not None:
        return "offer"
    return None


async def pool_expertise(session: AsyncSession, therapist_id: int) -> list[str] | None:
    """The expertise under which the therapist's dashboards are in the pool now; None while they are out of it (not
    approved, not available, or busy with an offer or a call)."""
    profile = await session.get(TherapistProfile, therapist_id)
    if profile is None or profile.status is not ApplicationStatus.approved or not profile.available:
        return None
    if await busy_with(session, therapist_id) is not None:
        return None
    return list(profile.expertise or [])


def not_busy(therapist_id: ColumnElement[int] | int) -> ColumnElement[bool]:
    """SQL: the therapist is neither in an open call nor holding an offer (what `busy_with` reads, as one predicate)."""
    holding = aliased(PoolRequest)
    return ~exists().where(Call.therapist_id == therapist_id, Call.status == CallStatus.open) & ~exists().where(
        holding.offered_to == therapist_id, holding.status == RequestStatus.offered)


async def available_therapists(ctx: PoolContext, expertise: Sequence[str]) -> list[int]:
    """Approved therapists who set themselves available, are not busy (the database, and the claim store for an
    offer being recorded) and match the request, whether online or not."""
    async with ctx.db.session() as session:
        rows = (await session.execute(
            select(TherapistProfile.user_id, TherapistProfile.expertise).where(
                TherapistProfile.status == ApplicationStatus.approved, TherapistProfile.available.is_(True),
                not_busy(TherapistProfile.user_id),
            )
        )).all()
    candidates = [tid for tid, exp in rows if matches(expertise, exp or [])]
    held = await ctx.claims.holding(candidates)
    return [tid for tid in candidates if tid not in held]
