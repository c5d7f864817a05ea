"""What holds the event loop (signalling/eventloop.py): collections and loop lag reach /metrics, the hooks come off
with the app, the diagnosis tools log what held the loop, and the collector settings are checked."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any, Callable

import aiohttp
import pytest
from conftest import LogCapture, RunningServer, wait_for

from core.errors import ConfigError
from core.settings import Settings
from signalling.eventloop import GcWatch, LoopLagWatch, RecentMax, StallSampler, debug_slow_callbacks
from signalling.metrics import Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_every_collection_is_timed_by_generation_until_the_hook_comes_off() -> None:
    metrics = Metrics()
    watch = GcWatch(metrics)
    watch.start()
    watch.start()   # once only
    try:
        gc.collect()
        gc.collect(0)
    finally:
        watch.stop()
    assert sample(metrics, "gc_pause_seconds_count", generation="2") == 1
    assert sample(metrics, "gc_pause_seconds_count", generation="0") >= 1
    assert sample(metrics, "gc_pause_seconds_sum", generation="2") > 0
    assert sample(metrics, "gc_pause_recent_max_seconds", generation="2") > 0
    assert watch._callback not in gc.callbacks   # noqa: SLF001
    gc.collect()
    assert sample(metrics, "gc_pause_seconds_count", generation="2") == 1


def test_recent_max_forgets_values_older_than_its_window() -> None:
    recent = RecentMax(window_s=10)
    recent.add(0.3, at=100.0)
    recent.add(0.1, at=105.0)
    recent.add(0.2, at=106.0)
    assert recent.value(at=109.0) == 0.3
    assert recent.value(at=111.0) == 0.2      # 0.3 left the window; 0.1 came before a larger one
    assert recent.value(at=117.0) == 0.0


async def test_loop_lag_counts_the_time_a_blocking_callback_held_the_loop() -> None:
    metrics = Metrics()
    watch = LoopLagWatch(metrics, tick_s=0.01)
    watch.start()
    try:
        await asyncio.sleep(0.02)
        time.sleep(0.05)   # holds the loop while the ticker is due
        await wait_for(lambda: sample(metrics, "event_loop_lag_seconds_count") >= 3)
    finally:
        await watch.stop()
    assert sample(metrics, "event_loop_lag_seconds_sum") > 0
    assert sample(metrics, "event_loop_lag_recent_max_seconds") > 0
    assert sample(metrics, "event_loop_lag_seconds_bucket", le="5.0") == sample(metrics, "event_loop_lag_seconds_count")


async def test_stall_sampler_logs_the_stack_that_held_the_loop(captured_logs: LogCapture) -> None:
    sampler = StallSampler(asyncio.get_running_loop(), 0.02)
    sampler.start()
    try:
        await asyncio.sleep(0.05)

        def hold_the_loop_for_a_while() -> None:
            time.sleep(0.3)

        hold_the_loop_for_a_while()
        await wait_for(lambda: "loop.stall" in captured_logs.getvalue())
    finally:
        sampler.stop()
    assert "hold_the_loop_for_a_while" in captured_logs.getvalue()


async def test_slow_callback_logging_names_the_callback(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    was_debug, was_duration = loop.get_debug(), loop.slow_callback_duration
    debug_slow_callbacks(loop, 0.02)
    try:
        def block_for_a_while() -> None:
            time.sleep(0.05)

        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.call_soon(block_for_a_while)
            await asyncio.sleep(0.1)
    finally:
        loop.set_debug(was_debug)
        loop.slow_callback_duration = was_duration
    assert any("block_for_a_while" in r.getMessage() for r in caplog.records)


async def test_the_app_exports_collections_and_loop_lag(server: RunningServer, http: aiohttp.ClientSession) -> None:
    gc.collect()

    async def lag_sampled() -> str | None:
        async with http.get(f"{server.url}/metrics") as resp:
            text = await resp.text()
        return text if "event_loop_lag_seconds_count" in text else None

    text = await wait_for(lag_sampled)  # the lag ticker's first sample comes a tick (0.1 s) after start, or later
    assert 'gc_pause_seconds_count{generation="2"}' in text
    assert "event_loop_lag_seconds_count" in text and "event_loop_lag_recent_max_seconds" in text


async def test_the_gc_hook_comes_off_when_the_app_stops(make_settings: Callable[..., Settings]) -> None:
    from conftest import start_server

    before = len(gc.callbacks)
    running = await start_server(make_settings())
    assert len(gc.callbacks) == before + 1
    await running.runner.cleanup()
    assert len(gc.callbacks) == before


@pytest.mark.parametrize("bad", [{"gc_threshold_gen0": 0}, {"gc_threshold_gen2": -1}, {"slow_callback_s": -1},
                                 {"stall_stacks_s": -0.5}])
def test_collector_and_diagnosis_settings_are_checked(make_settings: Callable[..., Settings], bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        make_settings(**bad)
