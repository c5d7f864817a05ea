"""Claims in process memory (embedded mode). Every method runs without awaiting, so each is atomic on the loop."""

from __future__ import annotations

from typing import Iterable

from core.clock import Clock, SystemClock
from pool.claims.base import ClaimResult


class MemoryClaimStore:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._rounds: dict[tuple[int, int], tuple[str, float]] = {}
        self._resolved: dict[tuple[int, int], tuple[str, float]] = {}
        self._held: dict[int, tuple[str, float]] = {}

    def _live(self, table: dict, key: object) -> str | None:
        entry = table.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock.monotonic():
            del table[key]
            return None
        return entry[0]

    def _prune(self) -> None:
        now = self.clock.monotonic()
        for table in (self._rounds, self._resolved):
            if len(table) > 10_000:
                for key in [k for k, (_, until) in table.items() if until <= now]:
                    del table[key]

    async def claim_round(self, request_id: int, round: int, therapist_id: int, ttl_s: float, hold_s: float) -> ClaimResult:
        if self._live(self._rounds, (request_id, round)) is not None:
            return ClaimResult.taken
        if self._live(self._held, therapist_id) is not None:
            return ClaimResult.busy
        now = self.clock.monotonic()
        self._prune()
        self._rounds[(request_id, round)] = (f"therapist:{therapist_id}", now + ttl_s)
        self._held[therapist_id] = (f"offer:{request_id}", now + hold_s)
        return ClaimResult.won

    async def take_round(self, request_id: int, round: int, owner: str, ttl_s: float) -> bool:
        if self._live(self._rounds, (request_id, round)) is not None:
            return False
        self._rounds[(request_id, round)] = (owner, self.clock.monotonic() + ttl_s)
        return True

    async def release_round(self, request_id: int, round: int, owner: str) -> None:
        if self._live(self._rounds, (request_id, round)) == owner:
            del self._rounds[(request_id, round)]

    async def resolve_round(self, request_id: int, round: int, outcome: str, ttl_s: float) -> bool:
        if self._live(self._resolved, (request_id, round)) is not None:
            return False
        self._resolved[(request_id, round)] = (outcome, self.clock.monotonic() + ttl_s)
        return True

    async def unresolve_round(self, request_id: int, round: int, outcome: str) -> None:
        if self._live(self._resolved, (request_id, round)) == outcome:
            del self._resolved[(request_id, round)]

    async def hold(self, therapist_id: int, what: str, ttl_s: float) -> None:
        self._held[therapist_id] = (what, self.clock.monotonic() + ttl_s)

    async def release(self, therapist_id: int, what: str) -> None:
        if self._live(self._held, therapist_id) == what:
            del self._held[therapist_id]

    async def holding(self, therapist_ids: Iterable[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for tid in therapist_ids:
            what = self._live(self._held, tid)
            if what is not None:
                out[tid] = what
        return out
