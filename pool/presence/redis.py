"""Presence in Redis: one sorted set per user of connection ids scored by expiry; each process refreshes its own,
so a crashed process's connections lapse within `ttl_s`."""

from __future__ import annotations

import time
from typing import Any, Iterable


class RedisPresence:
    def __init__(self, redis: Any, prefix: str, ttl_s: float = 30.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._local: dict[str, int] = {}

    def _key(self, user_id: int) -> str:
        return f"{self.prefix}:presence:{user_id}"

    def _expiry(self) -> float:
        return time.time() + self.ttl_s

    async def connected(self, user_id: int, sid: str) -> None:
        self._local[sid] = user_id
        await self.redis.zadd(self._key(user_id), {sid: self._expiry()})

    async def disconnected(self, user_id: int, sid: str) -> int:
        self._local.pop(sid, None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._key(user_id), sid)
            pipe.zremrangebyscore(self._key(user_id), "-inf", time.time())
            pipe.zcard(self._key(user_id))
            *_, remaining = await pipe.execute()
        return int(remaining)

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        ids = list(user_ids)
        if not ids:
            return set()
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in ids:
                pipe.zcount(self._key(user_id), now, "+inf")
            counts = await pipe.execute()
        return {u for u, n in zip(ids, counts) if int(n) > 0}

    async def sids(self, user_ids: Iterable[int]) -> list[str]:
        ids = list(user_ids)
        if not ids:
            return []
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in ids:
                pipe.zrangebyscore(self._key(user_id), now, "+inf")
            results = await pipe.execute()
        return [m.decode() if isinstance(m, bytes) else m for members in results for m in members]

    async def refresh(self) -> None:
        if not self._local:
            return
        expiry = self._expiry()
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid, user_id in self._local.items():
                pipe.zadd(self._key(user_id), {sid: expiry})
                pipe.expire(self._key(user_id), int(self.ttl_s * 2))
            await pipe.execute()
