"""How hard transcription works: compute time over audio time, a figure that must stay under 1."""

from __future__ import annotations

import time
from typing import Callable

from core.logging import get_logger

log = get_logger("transcription")
WARN_AT = 0.8


class LoadMeter:
    """Compute seconds per audio second over a sliding minute; warns (once a minute) when it nears 1, because past
    that point the backlog, and the latency, grow without bound. `clock` (monotonic seconds) is injectable for tests."""

    def __init__(self, window_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic,
                 name: str | None = None) -> None:
        self.window_s, self.clock, self.name = window_s, clock, name
        self.samples: list[tuple[float, float, float]] = []
        self.total_audio_s = 0.0
        self.total_compute_s = 0.0
        self._warned_at: float | None = None

    def add(self, audio_s: float, compute_s: float) -> None:
        now = self.clock()
        self.samples.append((now, audio_s, compute_s))
        self.total_audio_s += audio_s
        self.total_compute_s += compute_s
        ratio = self.ratio
        if ratio >= WARN_AT and (self._warned_at is None or now - self._warned_at > 60):
            self._warned_at = now
            fields = {"worker": self.name} if self.name else {}
            log.warning("transcription.near_capacity", compute_per_audio=round(ratio, 3), **fields)

    @property
    def ratio(self) -> float:
        now = self.clock()
        self.samples = [s for s in self.samples if now - s[0] <= self.window_s]
        audio = sum(s[1] for s in self.samples)
        return sum(s[2] for s in self.samples) / audio if audio else 0.0
