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


def noise(seconds: float, rate: int = 16000, seed: int = 7) -> np.ndarray:
    """Not speech: white noise with mains hum under it (float32 in [-1, 1])."""
    t = np.arange(int(rate * seconds)) / rate
    hiss = np.random.default_rng(seed).standard_normal(len(t)) * 0.05
    return (hiss + 0.1 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(_normalise(reference), _normalise(hypothesis) or "<empty>")
