"""State changes of a request, each a conditional UPDATE on (id, round, status): the database is the record, and a
change that lost a race (or follows a restart that forgot in-memory claims) changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pool.models import OfferOutcome, PoolOffer, PoolRequest, RequestStatus


async def move(session: AsyncSession, req: PoolRequest, to: RequestStatus, **values: Any) -> bool:
    """Move `req` from its current (status, round) to `to`; False when the row changed meanwhile."""
    result = await session.execute(
        update(PoolRequest)
        .where(PoolRequest.id == req.id, PoolRequest.round == req.round, PoolRequest.status == req.status)
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def pending_offer(session: AsyncSession, req: PoolRequest) -> PoolOffer | None:
    return await session.scalar(
        select(PoolOffer).where(
            PoolOffer.request_id == req.id, PoolOffer.round == req.round, PoolOffer.outcome == OfferOutcome.pending
        )
    )


async def declined_by(session: AsyncSession, request_id: int) -> list[int]:
    """Therapists whose offer for this request the client declined: it is not shown to them again."""
    rows = await session.scalars(
        select(PoolOffer.therapist_id).where(PoolOffer.request_id == request_id, PoolOffer.outcome == OfferOutcome.declined)
    )
    return list(rows)
