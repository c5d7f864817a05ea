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
