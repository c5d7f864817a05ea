"""Cuts one speaker's 16 kHz stream into utterances as they end, with streaming VAD state kept per stream."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np

from transcription.options import SAMPLE_RATE, VAD_WINDOW, SegmenterOptions
from transcription.vad import VadStream


@dataclass
class Utterance:
    """Speech between two pauses; `start`/`end` are sample positions from the start of the stream."""

    index: int
    start: int
    end: int
    audio: np.ndarray
    speech_ms: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


def _windows(ms: float) -> int:
    return max(1, math.ceil(ms * SAMPLE_RATE / 1000 / VAD_WINDOW))


class Segmenter:
    def __init__(self, options: SegmenterOptions | None = None, vad: VadStream | None = None) -> None:
        self.o = options or SegmenterOptions()
        self.vad = vad or VadStream()
        self.pad_w = _windows(self.o.pad_ms)
        self.end_w = _windows(self.o.end_silence_ms)
        self.cut_w = _windows(self.o.cut_silence_ms)
        self.min_w = _windows(self.o.min_speech_ms)
        self.max_w = _windows(self.o.max_utterance_s * 1000)
        self.pre: collections.deque[np.ndarray] = collections.deque(maxlen=self.pad_w)
        self._pending = np.zeros(0, dtype=np.float32)
        self.w = -1                      # index of the last window seen
        self.count = 0                   # utterances emitted
        self.utt: list[np.ndarray] | None = None
        self.first = 0
        self.last_speech = 0
        self.silence = 0
        self.speech = 0
        self.cuts: list[int] = []

    @property
    def speaking(self) -> bool:
        return self.utt is not None

    def feed(self, samples: np.ndarray) -> list[Utterance]:
        """Add audio (float32 in [-1, 1]); return the utterances that ended within it."""
        data = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(data) // VAD_WINDOW * VAD_WINDOW
        self._pending = data[whole:]
        probs = self.vad.feed(data[:whole])
        out: list[Utterance] = []
        for i, p in enumerate(probs):
            self.w += 1
            window = data[i * VAD_WINDOW:(i + 1) * VAD_WINDOW]
            out.extend(self._step(window, float(p)))
        return out

    def _step(self, window: np.ndarray, p: float) -> list[Utterance]:
        if self.utt is None:
            if p < self.o.threshold:
                self.pre.append(window)
                return []
            self.utt = [*self.pre, window]
            self.first = self.w - len(self.pre)
            self.pre.clear()
            self.last_speech, self.silence, self.speech, self.cuts = self.w, 0, 1, []
            return []
        self.utt.append(window)
        if p >= self.o.threshold:
            self.last_speech, self.silence = self.w, 0
            self.speech += 1
        elif p < self.o.neg_threshold:
            self.silence += 1
            if self.silence == self.cut_w:
                self.cuts.append(self.w - self.cut_w // 2)
        if self.silence >= self.end_w:
            return self._emit(min(self.last_speech + self.pad_w, self.w), keep_speaking=False)
        if self.w - self.first + 1 >= self.max_w:
            usable = [c for c in self.cuts if c - self.first >= self.min_w]
            return self._emit(usable[-1] if usable else self.w, keep_speaking=True)
        return []

    def _emit(self, end: int, *, keep_speaking: bool) -> list[Utterance]:
        """Close the utterance at window `end`; what follows it starts the next one (or becomes pre-roll)."""
        assert self.utt is not None
        n = end - self.first + 1
        taken, rest = self.utt[:n], self.utt[n:]
        out: list[Utterance] = []
        if self.speech >= self.min_w:
            out.append(Utterance(self.count, self.first * VAD_WINDOW, (end + 1) * VAD_WINDOW,
                                 np.concatenate(taken), int(self.speech * VAD_WINDOW * 1000 / SAMPLE_RATE)))
            self.count += 1
        if keep_speaking:
            self.utt, self.first = rest, end + 1
            self.speech = max(1, sum(1 for _ in rest) - self.silence)
            self.cuts = [c for c in self.cuts if c > end]
        else:
            self.utt = None
            self.pre.clear()
            self.pre.extend(rest[-self.pad_w:])
        return out

    def flush(self) -> list[Utterance]:
        """End of the stream: whatever speech is open becomes the last utterance."""
        if self.utt is None:
            return []
        return self._emit(min(self.last_speech + self.pad_w, self.w), keep_speaking=False)
