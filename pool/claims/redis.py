"""Claims in Redis, shared by every server process: each decision is one Lua script, atomic on the Redis server."""

from __future__ import annotations

from typing import Any, Iterable

from pool.claims.base import ClaimResult

_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'taken' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'busy' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
return 'won'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisClaimStore:
    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def _round(self, request_id: int, round: int) -> str:
        return f"{self.prefix}:pool:round:{request_id}:{round}"

    def _resolved(self, request_id: int, round: int) -> str:
        return f"{self.prefix}:pool:resolved:{request_id}:{round}"

    def _held(self, therapist_id: int) -> str:
        return f"{self.prefix}:pool:held:{therapist_id}"

    async def claim_round(self, request_id: int, round: int, therapist_id: int, ttl_s: float, hold_s: float) -> ClaimResult:
        result = await self._claim(
            keys=[self._round(request_id, round), self._held(therapist_id)],
            args=[f"therapist:{therapist_id}", f"offer:{request_id}", int(ttl_s * 1000), int(hold_s * 1000)],
        )
        return ClaimResult(result.decode() if isinstance(result, bytes) else result)

    async def take_round(self, request_id: int, round: int, owner: str, ttl_s: float) -> bool:
        return bool(await self.redis.set(self._round(request_id, round), owner, nx=True, px=int(ttl_s * 1000)))

    async def release_round(self, request_id: int, round: int, owner: str) -> None:
        await self._release(keys=[self._round(request_id, round)], args=[owner])

    async def resolve_round(self, request_id: int, round: int, outcome: str, ttl_s: float) -> bool:
        return bool(await self.redis.set(self._resolved(request_id, round), outcome, nx=True, px=int(ttl_s * 1000)))

    async def unresolve_round(self, request_id: int, round: int, outcome: str) -> None:
        await self._release(keys=[self._resolved(request_id, round)], args=[outcome])

    async def hold(self, therapist_id: int, what: str, ttl_s: float) -> None:
        await self.redis.set(self._held(therapist_id), what, px=int(ttl_s * 1000))

    async def release(self, therapist_id: int, what: str) -> None:
        await self._release(keys=[self._held(therapist_id)], args=[what])

    async def holding(self, therapist_ids: Iterable[int]) -> dict[int, str]:
        ids = list(therapist_ids)
        if not ids:
            return {}
        values = await self.redis.mget([self._held(t) for t in ids])
        return {t: (v.decode() if isinstance(v, bytes) else v) for t, v in zip(ids, values) if v is not None}
