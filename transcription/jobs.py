"""An utterance on its way to be transcribed, and back."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class UtteranceJob:
    call_id: int
    speaker_role: str
    speaker_id: int
    index: int
    start_ms: int          # in call time
    end_ms: int
    audio: np.ndarray      # 16 kHz mono float32
    previous_text: str = ""
    #: Monotonic time the utterance was cut (for latency figures; only meaningful within one process).
    cut_at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> str:
        """Unique per utterance: results are stored once under it, however often they are delivered."""
        return f"{self.speaker_role}:{self.speaker_id}:{self.start_ms}"

    @property
    def seconds(self) -> float:
        return len(self.audio) / 16000

    def to_fields(self) -> dict[str, str]:
        """For a Redis Stream entry (audio as 16-bit PCM)."""
        pcm = (np.clip(self.audio, -1, 1) * 32767).astype("<i2").tobytes()
        meta = {k: getattr(self, k) for k in ("call_id", "speaker_role", "speaker_id", "index", "start_ms", "end_ms",
                                                "previous_text")}
        return {"meta": json.dumps(meta), "pcm": base64.b64encode(pcm).decode()}

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> "UtteranceJob":
        get = lambda k: fields.get(k) if k in fields else fields.get(k.encode())  # noqa: E731
        meta = json.loads(get("meta"))
        pcm = np.frombuffer(base64.b64decode(get("pcm")), dtype="<i2").astype(np.float32) / 32768
        return cls(audio=pcm, **meta)
