"""The rate limiter interface: a fixed window of `limit` hits per `window_s` seconds per key."""

from __future__ import annotations

from typing import Protocol


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> float:
        """Count one attempt for `key`; return 0 if allowed, else the seconds until the next attempt is allowed."""
        ...

    async def peek(self, key: str, limit: int, window_s: float) -> float:
        """Like `hit` without counting: 0 if another attempt would be allowed now."""
        ...

    async def reset(self, key: str) -> None:
        """Forget the attempts of `key` (e.g. after a successful sign-in)."""
        ...
