"""Time-driven changes: requests nobody took expire; offers the client did not answer go back to the pool.

Every server process may sweep; the claim store makes each change happen once."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from core.logging import get_logger
from core.tasks import cancel_and_wait
from pool.context import PoolContext
from pool.models import OfferOutcome, PoolRequest, RequestStatus
from pool.offers import end_offer, publish_to_client
from pool.transitions import move

log = get_logger("pool")
#: How long past its expiry an open request waits for the holder of its round before the database decides alone.
STALE_CLAIM_S = 60


async def sweep(ctx: PoolContext) -> dict[str, int]:
    """One pass; returns how many requests expired and how many offers timed out."""
    now = ctx.clock.now()
    async with ctx.db.session() as session:
        due = list((await session.scalars(
            select(PoolRequest).where(PoolRequest.status == RequestStatus.open, PoolRequest.expires_at <= now)
        )).all())
        stale = (await session.execute(
            select(PoolRequest.id, PoolRequest.round).where(
                PoolRequest.status == RequestStatus.offered, PoolRequest.offer_expires_at <= now
            )
        )).all()
    expired = 0
    for req in due:
        taken = await ctx.claims.take_round(req.id, req.round, "expire", ctx.round_ttl_s)
        # Long past its expiry and still open in the database: whoever holds the round never recorded anything (a
        # crashed process), and the conditional UPDATE below decides against anyone still trying.
        if not taken and (now - req.expires_at).total_seconds() < STALE_CLAIM_S:
            continue
        try:
            async with ctx.db.transaction() as session:
                moved = await move(session, req, RequestStatus.expired, closed_at=now)
        except Exception:  # noqa: BLE001 - give the round back and go on with the others; the next pass retries
            if taken:
                await ctx.claims.release_round(req.id, req.round, "expire")
            log.exception("pool.expire_failed", request_id=req.id)
            continue
        if not moved:
            continue
        req.status = RequestStatus.expired
        await ctx.memory.remember(req, [])
        expired += 1
        log.info("pool.expired", request_id=req.id)
        await ctx.broadcast.to_dashboards((), "pool.request_removed", {"request_id": req.id, "reason": "expired"})
        await publish_to_client(ctx, req)
    timed_out = 0
    for request_id, round in stale:
        if await end_offer(ctx, request_id, round, OfferOutcome.timed_out) is not None:
            timed_out += 1
    return {"expired": expired, "timed_out": timed_out}


class Sweeper:
    """Runs `sweep` every `interval_s` seconds until stopped."""

    def __init__(self, ctx: PoolContext, interval_s: float) -> None:
        self.ctx, self.interval_s = ctx, interval_s
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await sweep(self.ctx)
            except Exception:  # noqa: BLE001 - keep sweeping after a database hiccup
                log.exception("pool.sweep_failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pool-sweeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
