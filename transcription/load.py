"""How hard transcription works: compute time over audio time, a figure that must stay under 1."""

from __future__ import annotations

import time

from core.logging import get_logger

log = get_logger("transcription")
WARN_AT = 0.8


class LoadMeter:
    """Compute seconds per audio second over a sliding minute; warns (once a minute) when it nears 1, because past
    that point the backlog, and the latency, grow without bound."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self.samples: list[tuple[float, float, float]] = []
        self.total_audio_s = 0.0
        self.total_compute_s = 0.0
        self._warned_at = 0.0

    def add(self, audio_s: float, compute_s: float) -> None:
        now = time.monotonic()
        self.samples.append((now, audio_s, compute_s))
        self.samples = [s for s in self.samples if now - s[0] <= self.window_s]
        self.total_audio_s += audio_s
        self.total_compute_s += compute_s
        ratio = self.ratio
        if ratio >= WARN_AT and now - self._warned_at > 60:
            self._warned_at = now
            log.warning("transcription.near_capacity", compute_per_audio=round(ratio, 3))

    @property
    def ratio(self) -> float:
        audio = sum(s[1] for s in self.samples)
        return sum(s[2] for s in self.samples) / audio if audio else 0.0
