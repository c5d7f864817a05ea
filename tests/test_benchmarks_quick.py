"""Every benchmark in `benchmarks/` runs in its `--quick` mode, so a broken benchmark fails the suite.

A benchmark is a module `benchmarks/<name>.py` (not `__init__.py`, not a private `_helper.py`) that runs as
`python -m benchmarks.<name> --quick` and prints its figures as one JSON object on its last line of output.
No timing is asserted here: benchmarks print figures, tests only check that they run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import POSTGRES_URL, REDIS_URL, ROOT

BENCHMARKS_DIR = ROOT / "benchmarks"
TIMEOUT_S = 300


def discover() -> list[str]:
    return sorted(p.stem for p in BENCHMARKS_DIR.glob("*.py") if not p.name.startswith("_"))


def test_benchmarks_are_discoverable() -> None:
    assert (BENCHMARKS_DIR / "__init__.py").is_file(), "benchmarks/ must be a package"
    assert all(name.isidentifier() for name in discover()), discover()


@pytest.mark.slow
@pytest.mark.parametrize("name", discover())
def test_benchmark_runs_in_quick_mode(name: str) -> None:
    env = {**os.environ, "TEST_POSTGRES_URL": POSTGRES_URL, "TEST_REDIS_URL": REDIS_URL}
    proc = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stdout, stderr, timed_out = "", "", True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the benchmark, if still running, and anything it left behind
        proc.wait()
    assert not timed_out, f"benchmarks.{name} --quick ran longer than {TIMEOUT_S}s"
    assert proc.returncode == 0, f"benchmarks.{name} --quick exited with {proc.returncode}\n{stderr[-3000:]}"
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, f"benchmarks.{name} --quick printed nothing\n{stderr[-3000:]}"
    try:
        figures = json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"the last line of benchmarks.{name} --quick is not JSON: {lines[-1][:500]}")
    assert isinstance(figures, dict), f"the last line of benchmarks.{name} --quick is not a JSON object"


@pytest.mark.slow
def test_the_transcription_benchmark_runs_on_another_folder_with_8khz_and_long_clips(tmp_path) -> None:
    """`--speech-dir` with clips at another sample rate and longer than a minute (the manifest's format)."""
    import csv
    import wave

    import numpy as np
    from faster_whisper import decode_audio

    from conftest import SPEECH_DIR

    with open(SPEECH_DIR / "manifest.tsv", newline="") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh, delimiter="\t")}
    fields = list(next(iter(rows.values())).keys())

    def write(name: str, audio: np.ndarray, rate: int, reference: str) -> dict[str, str]:
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
        return {**{k: "" for k in fields}, "file": name, "seconds": f"{len(audio) / rate:.3f}",
                "sample_rate": str(rate), "reference_text": reference}

    short = "librivox_sense-and-sensibility-ch01_0930.wav"
    parts = ["jfk_inaugural-1961_ask-not.wav", "mfa_acoustic_corpus_spontaneous.wav",
             "ls-test-clean_1221-135766-0001.wav", "fleurs_en-us-test_002.wav"]
    gap = np.zeros(16000, dtype=np.float32)
    long_audio = np.concatenate([x for p in parts for x in (decode_audio(str(SPEECH_DIR / p)), gap)])
    assert len(long_audio) / 16000 > 60
    manifest = [
        write("phone-8k.wav", decode_audio(str(SPEECH_DIR / short), sampling_rate=8000), 8000,
              rows[short]["reference_text"]),
        write("long.wav", long_audio, 16000, " ".join(rows[p]["reference_text"] for p in parts)),
    ]
    with open(tmp_path / "manifest.tsv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, delimiter="\t")
        writer.writeheader()
        writer.writerows(manifest)

    env = {**os.environ, "TEST_POSTGRES_URL": POSTGRES_URL, "TEST_REDIS_URL": REDIS_URL}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.transcription", "--quick", "--speech-dir", str(tmp_path)],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["clips"] == 2 and figures["audio_seconds"] > 63, figures
    assert figures["offline_wer"] < 0.5 and figures["live_clips"] == 1 and figures["wer"] is not None, figures


POOL_RACE_KEYS = {
    "processes", "racers", "dashboards", "requests", "winners_per_request_min", "winners_per_request_max",
    "winner_ack_p50_ms", "winner_ack_p99_ms", "accept_to_ack_p99_ms", "fanout_p50_ms", "fanout_p99_ms", "claims_per_s",
    "floor_ack_p99_ms", "floor_fanout_p99_ms",
}


@pytest.mark.slow
def test_the_pool_race_benchmark_reports_its_figures_and_one_winner_per_request() -> None:
    env = {**os.environ, "TEST_POSTGRES_URL": POSTGRES_URL, "TEST_REDIS_URL": REDIS_URL}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.pool_race", "--quick"], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=TIMEOUT_S, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not POOL_RACE_KEYS - set(figures), f"missing: {sorted(POOL_RACE_KEYS - set(figures))}"
    assert figures["winners_per_request_min"] == figures["winners_per_request_max"] == 1, figures
    assert figures["requests"] > 0 and figures["claims_per_s"], figures
