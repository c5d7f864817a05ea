"""The race harness shared by the race tests: many therapists accept the same request at the same moment."""

from __future__ import annotations

import asyncio
import collections
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sqlalchemy import select

from conftest import Sock, User
from core.db import Database
from pool.models import PoolOffer


@dataclass
class RaceResult:
    request_id: int
    acks: dict[int, Any] = field(default_factory=dict)      # therapist id -> ack
    offered_to: int | None = None                          # whom the client was offered

    @property
    def winners(self) -> list[int]:
        return [tid for tid, ack in self.acks.items() if ack.get("ok")]

    @property
    def loser_codes(self) -> collections.Counter:
        return collections.Counter(ack["error"]["code"] for ack in self.acks.values() if not ack.get("ok"))


async def race(
    therapists: Sequence[tuple[User, Sock]], clients: Sequence[Sock], *, timeout: float = 10
) -> list[RaceResult]:
    """For each client in turn: request, wait until every dashboard shows it, let every therapist accept at once,
    then the client withdraws (freeing the winner for the next round)."""
    results = []
    for client in clients:
        ack = await client.call("pool.request", {"reason": "race"})
        assert ack["ok"], ack
        request_id = ack["request"]["id"]
        await asyncio.gather(*(
            sock.next("pool.request_added", lambda d: d["request"]["id"] == request_id, timeout=timeout)
            for _, sock in therapists
        ))
        order = random.sample(list(therapists), len(therapists))  # who fires first changes from round to round
        acks = await asyncio.gather(*(sock.call("pool.accept", {"request_id": request_id}) for _, sock in order))
        result = RaceResult(request_id, {user.id: a for (user, _), a in zip(order, acks)})
        if result.winners:
            update = await client.next(
                "pool.request_updated", lambda d: d["request"]["id"] == request_id and d["request"]["status"] == "offered",
                timeout=timeout,
            )
            result.offered_to = update["request"]["offer"]["therapist"]["id"]
        cancel = await client.call("pool.cancel", {"request_id": request_id})
        assert cancel["ok"], cancel
        results.append(result)
    return results


async def recorded_offers(database_url: str, request_ids: Sequence[int]) -> dict[int, list[int]]:
    db = Database(database_url)
    try:
        async with db.session() as session:
            rows = (await session.execute(
                select(PoolOffer.request_id, PoolOffer.therapist_id).where(PoolOffer.request_id.in_(request_ids))
            )).all()
    finally:
        await db.dispose()
    out: dict[int, list[int]] = collections.defaultdict(list)
    for request_id, therapist_id in rows:
        out[request_id].append(therapist_id)
    return out


def check_race(results: Sequence[RaceResult], offers: dict[int, list[int]]) -> None:
    """Exactly one winner per request, every loser told `taken`, and the client and the database agree with it."""
    for r in results:
        assert len(r.winners) == 1, f"request {r.request_id} had winners {r.winners}"
    for r in results:
        assert set(r.loser_codes) <= {"taken"}, f"request {r.request_id}: losers got {dict(r.loser_codes)}"
        assert r.offered_to == r.winners[0], f"request {r.request_id}: client offered {r.offered_to}, winner {r.winners}"
        assert offers.get(r.request_id) == r.winners, f"request {r.request_id}: database says {offers.get(r.request_id)}"


def summary(results: Sequence[RaceResult]) -> Callable[[], str]:
    return lambda: ", ".join(f"{r.request_id}:{r.winners}" for r in results)
