"""Speech clips for transcription benchmarks: the manifest, audio at 16 kHz (Whisper) and 48 kHz (what a browser
sends), where each clip's speech ends, and word error rate on Whisper-normalised text.

A speech folder holds WAV (or any file PyAV decodes) files and a `manifest.tsv` with at least the columns `file`,
`seconds`, `sample_rate` and `reference_text` (the format of `../shared/speech/`). Any sample rate and length is
accepted: audio is decoded and resampled with PyAV.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

SAMPLE_RATE_16K = 16000
SAMPLE_RATE_48K = 48000
#: `../shared/speech/` next to the checkout (or SPEECH_DIR).
DEFAULT_SPEECH_DIR = Path(os.environ.get("SPEECH_DIR", Path(__file__).resolve().parents[2] / "shared" / "speech"))
SPEECH_END_METHODS = ("vad", "energy", "clip")


@dataclass
class Clip:
    name: str
    path: Path
    reference: str
    audio16: np.ndarray                     # float32 mono, 16 kHz
    speech_end_s: float                     # where the last speech ends (see `speech_end`)
    manifest_seconds: float = 0.0
    manifest_rate: int = 0
    _pcm48: np.ndarray | None = field(default=None, repr=False)

    @property
    def seconds(self) -> float:
        return len(self.audio16) / SAMPLE_RATE_16K

    @property
    def pcm48(self) -> np.ndarray:
        """48 kHz mono int16, decoded from the file (as `benchmarks._peers.load_wav_48k` does), no padding."""
        if self._pcm48 is None:
            from benchmarks._peers import load_wav_48k

            self._pcm48 = load_wav_48k(str(self.path), 0.0)
        return self._pcm48


def read_manifest(speech_dir: Path) -> list[dict[str, str]]:
    path = speech_dir / "manifest.tsv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r.get("file")]
    missing = [c for c in ("file", "reference_text") if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return rows


def decode_16k(path: Path) -> np.ndarray:
    """Any audio file as 16 kHz mono float32 (PyAV, as faster-whisper decodes files)."""
    from faster_whisper import decode_audio

    return decode_audio(str(path), sampling_rate=SAMPLE_RATE_16K)


def speech_end(audio16: np.ndarray, method: str = "vad") -> float:
    """Seconds from the start of the clip to the end of its last speech.

    `vad`: Silero VAD over the whole clip (faster-whisper's offline helper, threshold 0.5, 100 ms minimum silence,
    no padding): robust to background noise at the end of a clip. `energy`: the last 10 ms window louder than
    max(-40 dBFS, the clip's noise floor (10th percentile) + 10 dB). `clip`: the end of the file."""
    seconds = len(audio16) / SAMPLE_RATE_16K
    if method == "clip" or len(audio16) == 0:
        return seconds
    if method == "energy":
        w = SAMPLE_RATE_16K // 100
        n = len(audio16) // w
        if n == 0:
            return seconds
        rms = np.sqrt((audio16[:n * w].reshape(n, w).astype(np.float64) ** 2).mean(axis=1) + 1e-12)
        db = 20 * np.log10(rms)
        threshold = max(-40.0, float(np.percentile(db, 10)) + 10.0)
        loud = np.nonzero(db > threshold)[0]
        return seconds if len(loud) == 0 else min(seconds, (int(loud[-1]) + 1) * w / SAMPLE_RATE_16K)
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    chunks = get_speech_timestamps(audio16, VadOptions(min_silence_duration_ms=100, speech_pad_ms=0))
    return seconds if not chunks else min(seconds, chunks[-1]["end"] / SAMPLE_RATE_16K)


def load_clips(speech_dir: Path, *, names: Sequence[str] | None = None, shortest: int | None = None,
               end_method: str = "vad") -> list[Clip]:
    """The manifest's clips in manifest order; `shortest=N` keeps the N shortest (by decoded length)."""
    rows = read_manifest(speech_dir)
    if names:
        rows = [r for r in rows if r["file"] in set(names)]
    clips = []
    for row in rows:
        path = speech_dir / row["file"]
        audio = decode_16k(path)
        clips.append(Clip(
            name=row["file"], path=path, reference=row["reference_text"], audio16=audio,
            speech_end_s=speech_end(audio, end_method),
            manifest_seconds=float(row.get("seconds") or 0) or len(audio) / SAMPLE_RATE_16K,
            manifest_rate=int(float(row.get("sample_rate") or 0)),
        ))
    if shortest is not None:
        keep = {id(c) for c in sorted(clips, key=lambda c: c.seconds)[:shortest]}
        clips = [c for c in clips if id(c) in keep]
    if not clips:
        raise ValueError(f"no clips in {speech_dir}")
    return clips


# ---------------------------------------------------------------- scoring


@lru_cache(maxsize=1)
def _normaliser() -> object:
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalise(text: str) -> str:
    """Whisper's English normaliser (PyPI `whisper-normalizer`), whitespace collapsed."""
    return " ".join(_normaliser()(text).split())  # type: ignore[operator]


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float | int]:
    """WER over all words of all pairs together (errors summed, divided by all reference words), on normalised text."""
    import jiwer

    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    if not pairs:
        return {"wer": math.nan, "words": 0, "substitutions": 0, "deletions": 0, "insertions": 0}
    out = jiwer.process_words([p[0] for p in pairs], [p[1] for p in pairs])
    words = out.hits + out.substitutions + out.deletions
    return {"wer": out.wer, "words": words, "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions}


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]
