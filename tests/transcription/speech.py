"""The real speech clips of ../shared/speech and the scoring used by the transcription tests."""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import jiwer
import numpy as np
from whisper_normalizer.english import EnglishTextNormalizer

from conftest import SPEECH_DIR

_normalise = EnglishTextNormalizer()


def manifest() -> dict[str, str]:
    with open(SPEECH_DIR / "manifest.tsv", newline="") as fh:
        return {row["file"]: row["reference_text"] for row in csv.DictReader(fh, delimiter="\t")}


def clip(name: str) -> Path:
    return SPEECH_DIR / name


def pcm16k(name: str) -> np.ndarray:
    with wave.open(str(clip(name))) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(_normalise(reference), _normalise(hypothesis) or "<empty>")
