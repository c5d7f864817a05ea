"""What the server does with a member's audio frames, behind one small interface. This module holds the simplest
consumer (a level meter); recording and transcription plug in the same way."""

from __future__ import annotations

import math
import time
from typing import Protocol

import av
import numpy as np


class FrameConsumer(Protocol):
    """Receives each audio frame of one member's track, on the event loop: must return at once (queue heavy work)."""

    def on_frame(self, frame: av.AudioFrame) -> None: ...

    def close(self) -> None: ...


class LevelMeter:
    """Counts frames and measures the level (dBFS RMS) of the last frame."""

    def __init__(self) -> None:
        self.frames = 0
        self.samples = 0
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.level_dbfs = -math.inf
        self.peak_dbfs = -math.inf
        self.closed = False

    def on_frame(self, frame: av.AudioFrame) -> None:
        now = time.monotonic()
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now
        self.frames += 1
        self.samples += frame.samples
        pcm = frame.to_ndarray().astype(np.float32)
        if frame.format.name.startswith("s16"):
            pcm /= 32768.0
        rms = float(np.sqrt(np.mean(pcm * pcm))) if pcm.size else 0.0
        self.level_dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
        self.peak_dbfs = max(self.peak_dbfs, self.level_dbfs)

    def close(self) -> None:
        self.closed = True
