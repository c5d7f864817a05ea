"""What holds the server's event loop, and the collector settings that keep it short.

Every server process (always on, cheap): `GcWatch` times each garbage collection through `gc.callbacks` into the
`gc_pause_seconds{generation}` histogram (wall time: what every waiting callback sees) and `gc_cpu_seconds_total`
(the thread's CPU time: the collector's own cost, even on a machine busy with other work); `LoopLagWatch` measures
how late a 100 ms ticker wakes up (`event_loop_lag_seconds`). Both also keep the largest value of the last `RECENT_S`
seconds (`*_recent_max_seconds` gauges), so a scraper polling every few seconds sees every spike exactly.

For diagnosis, off by default: `slow_callback_s` runs the loop in asyncio debug mode, which logs every callback that
held the loop longer (`asyncio` logger; debug mode records where each handle was created, which costs CPU), and
`stall_stacks_s` starts a watchdog thread that logs the loop thread's stack when the loop has not answered for that
long (what was running, without debug mode's cost).

At start-up (`tune_gc`, `freeze_heap`): the collector's thresholds from the settings, and once the process is
serving, one full collection and `gc.freeze()`, so later full collections no longer walk the start-up heap
(aiortc, PyAV, faster-whisper, SQLAlchemy: ~170,000 objects, 140-270 ms per full collection on the development
machine). Each open connection adds ~150 objects (~0.14 ms of a full collection), hence the rare full collections
of the default `gc_threshold_gen2`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import sys
import threading
import time
import traceback
from typing import Any

from core.logging import get_logger
from core.settings import Settings
from core.tasks import cancel_and_wait

log = get_logger("eventloop")
RECENT_S = 10.0          # the window of the recent-max gauges
TICK_S = 0.1             # the loop-lag ticker


class RecentMax:
    """The largest value seen in the last `window_s` seconds."""

    def __init__(self, window_s: float = RECENT_S) -> None:
        self.window_s = window_s
        self._values: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, value: float, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        values = self._values
        while values and values[-1][1] <= value:   # a smaller, older value can never be the max again
            values.pop()
        values.append((at, value))

    def value(self, at: float | None = None) -> float:
        at = time.monotonic() if at is None else at
        values = self._values
        while values and values[0][0] < at - self.window_s:
            values.popleft()
        return values[0][1] if values else 0.0


class GcWatch:
    """Times every collection (`gc.callbacks`) into the metrics; `start`/`stop` add and remove the hook (one per
    app, so test processes that build many apps do not pile them up)."""

    def __init__(self, metrics: Any) -> None:
        self._children = [metrics.gc_pause.labels(str(g)) for g in range(3)]
        self._cpu = [metrics.gc_cpu.labels(str(g)) for g in range(3)]
        self.recent = [RecentMax() for _ in range(3)]
        self._started: float | None = None
        self._started_cpu = 0.0
        metrics.gc_recent_max.labels("0").set_function(lambda: self.recent[0].value())
        metrics.gc_recent_max.labels("1").set_function(lambda: self.recent[1].value())
        metrics.gc_recent_max.labels("2").set_function(lambda: self.recent[2].value())

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        if self._started is None:
            return
        pause = time.perf_counter() - self._started
        cpu = time.thread_time() - self._started_cpu
        self._started = None
        generation = min(2, max(0, int(info.get("generation", 0))))
        self._children[generation].observe(pause)
        self._cpu[generation].inc(max(0.0, cpu))
        self.recent[generation].add(pause)

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)


class LoopLagWatch:
    """A task that sleeps `TICK_S` and records how much later than that it woke up: the time the loop spent on
    other callbacks (or a collection, or a slow one) before it could run this one."""

    def __init__(self, metrics: Any, tick_s: float = TICK_S) -> None:
        self.metrics, self.tick_s = metrics, tick_s
        self.recent = RecentMax()
        self._task: asyncio.Task[None] | None = None
        metrics.loop_lag_recent_max.set_function(lambda: self.recent.value())

    async def _run(self) -> None:
        histogram = self.metrics.loop_lag
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.tick_s)
            lag = max(0.0, time.monotonic() - t0 - self.tick_s)
            histogram.observe(lag)
            self.recent.add(lag)

    def start(self) -> None:
        self._task = self._task or asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


class StallSampler:
    """Diagnosis: a thread that asks the loop to run a no-op every `threshold_s`; when the loop has not run it
    within `threshold_s`, logs the loop thread's stack as it is then (`loop.stall`, with how long the stall lasted).
    Off unless `stall_stacks_s` is set. A collection holds the GIL, so this thread cannot run during one: those
    pauses are `gc_pause_seconds`; this finds the Python code that holds the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold_s: float) -> None:
        self.loop, self.threshold_s = loop, threshold_s
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.threshold_s):
            answered = threading.Event()
            started = time.monotonic()
            try:
                self.loop.call_soon_threadsafe(answered.set)
            except RuntimeError:   # the loop is closed
                return
            if answered.wait(self.threshold_s):
                continue
            frame = sys._current_frames().get(self._loop_thread)  # noqa: SLF001 - the point of this tool
            stack = "".join(traceback.format_stack(frame, limit=25)) if frame is not None else ""
            answered.wait(30)
            log.warning("loop.stall", ms=round((time.monotonic() - started) * 1000, 1), stack=stack)


def tune_gc(settings: Settings) -> None:
    """The collector's thresholds from the settings (process-wide: called by the command line, not the app)."""
    gc.set_threshold(settings.gc_threshold_gen0, settings.gc_threshold_gen1, settings.gc_threshold_gen2)


def freeze_heap() -> int:
    """One full collection, then every object left is moved to the permanent generation (`gc.freeze()`), where
    collections no longer look. For what lives as long as the process: call it once start-up is done. Returns the
    number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def debug_slow_callbacks(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """asyncio debug mode: every callback holding the loop longer than `seconds` is logged (logger `asyncio`)."""
    import logging

    loop.set_debug(True)
    loop.slow_callback_duration = seconds
    logging.getLogger("asyncio").setLevel(logging.WARNING)
