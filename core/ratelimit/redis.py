"""Rate limiter shared by every server process through Redis (INCR with expiry, one round trip)."""

from __future__ import annotations

from typing import Any

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[1])
  return redis.call('PTTL', KEYS[1])
end
return 0
"""


class RedisRateLimiter:
    """Fixed windows in Redis keys `<prefix>:rl:<key>`."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._hit = redis.register_script(_HIT)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:rl:{key}"

    async def hit(self, key: str, limit: int, window_s: float) -> float:
        wait_ms = await self._hit(keys=[self._key(key)], args=[int(window_s * 1000), limit])
        return max(0.0, int(wait_ms) / 1000)

    async def peek(self, key: str, limit: int, window_s: float) -> float:
        count, ttl = await self.redis.get(self._key(key)), await self.redis.pttl(self._key(key))
        return max(0.0, ttl / 1000) if count is not None and int(count) >= limit else 0.0

    async def reset(self, key: str) -> None:
        await self.redis.delete(self._key(key))
