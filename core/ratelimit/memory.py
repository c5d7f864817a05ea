"""In-process rate limiter for the embedded mode (one server process)."""

from __future__ import annotations

from core.clock import Clock, SystemClock


class MemoryRateLimiter:
    """Fixed windows kept in a dict; windows that ended are pruned as the dict grows."""

    def __init__(self, clock: Clock | None = None, max_keys: int = 100_000) -> None:
        self.clock = clock or SystemClock()
        self.max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}

    def _current(self, key: str, window_s: float) -> tuple[float, int]:
        now = self.clock.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window_s:
            start, count = now, 0
        return start, count

    async def hit(self, key: str, limit: int, window_s: float) -> float:
        start, count = self._current(key, window_s)
        if count >= limit:
            return max(0.0, start + window_s - self.clock.monotonic())
        if len(self._windows) >= self.max_keys:
            now = self.clock.monotonic()
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < window_s}
        self._windows[key] = (start, count + 1)
        return 0.0

    async def peek(self, key: str, limit: int, window_s: float) -> float:
        start, count = self._current(key, window_s)
        return max(0.0, start + window_s - self.clock.monotonic()) if count >= limit else 0.0

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)
