"""The load-test tool (`benchmarks.loadtest`): its bookkeeping on short real runs (a few calls for a few seconds
against a server it starts), and the arithmetic that decides a step's figures, validity and service levels.

The real runs relax the generator's own limits (`--max-loop-lag-ms`, `--max-late-frames`) so that a busy machine
does not end them early: these tests check the bookkeeping and the bounds, not the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import POSTGRES_URL, REDIS_URL, ROOT

from benchmarks._loadaudio import EncodedClip, Utterance
from benchmarks._loadhost import (
    ProcessWatch,
    Watched,
    by_label,
    cpu_seconds,
    histogram_quantile,
    loop_figures,
    memory_mb,
    parse_cpus,
    parse_histograms,
    parse_metrics,
    recent_max,
)
from benchmarks._loadpeople import SimCall, Stats
from benchmarks._loadreport import Limits, chart, conclude, judge, pct, summarise_step
from benchmarks.loadtest import add_up, parse_args, parse_steps, plan

RELAXED = ["--max-loop-lag-ms", "100000", "--max-late-frames", "1", "--setup-timeout", "30"]

RESULT_FIELDS = {"tool", "version", "label", "mode", "started_at", "wall_s", "stopped_by", "stop_detail", "error",
                 "plan", "limits", "config", "deployment", "generator", "machine", "steps", "bookkeeping",
                 "conclusion", "targets"}
STEP_FIELDS = {"step", "target_calls", "calls", "connections", "window_s", "ramp_s", "setups", "setups_failed",
               "setup_failures", "request_to_accept_ms", "accept_to_connected_ms", "signal_relay_rtt_ms",
               "ping_rtt_ms", "ping_stalls", "notes_save_ms", "chat", "races", "frames", "transcripts", "errors", "error_count",
               "server", "aux", "generator", "valid", "invalid_reasons", "setup_judged", "slo", "t", "loadavg"}
DIST_FIELDS = {"n", "p50", "p95", "p99", "max"}
SERVER_FIELDS = {"processes", "cpu_s", "cpu_pct", "cpu_s_per_call_s", "cpu_pct_per_call", "cpu_pct_per_connection",
                 "rss_mb", "cores", "core_utilisation", "marginal_cpu_pct_per_call", "ramp_cpu_pct",
                 "gc_pause_max_ms", "gc_pause_total_ms", "gc_by_generation", "gc_cpu_ms", "gc_cpu_share",
                 "loop_lag_p99_ms", "loop_lag_max_ms"}
PROCESS_FIELDS = {"label", "pid", "url", "cpu_s", "cpu_pct", "rss_mb", "rss_peak_mb", "alive"}
GENERATOR_FIELDS = {"workers", "loop_lag_p99_ms", "ramp_loop_lag_p99_ms", "late_frames", "late_frame_fraction",
                    "cpu_pct"}
FRAME_FIELDS = {"sent", "lost", "received", "received_fraction", "server_dropped", "loss_fraction", "p2p_sent",
                "p2p_received"}
TRANSCRIPT_FIELDS = {"expected", "utterances", "untranscribed", "latency_ms", "backlog_max", "backlog_mean",
                     "compute_per_audio_max"}
BOOKKEEPING_FIELDS = {"calls_started", "calls_connected", "calls_failed", "calls_ended", "calls_set_up_attempted",
                      "calls_verified_ended", "calls_verified_open", "calls_verify_errors", "requests",
                      "requests_cancelled", "requests_refused", "requests_stranded", "chat_sent", "chat_acked",
                      "chat_delivered", "chat_lost", "connections_left", "setups_unreported",
                      "setups_reported_in_steps", "checks", "all_ended", "counts_add_up"}
CONCLUSION_FIELDS = {"last_held_step", "max_calls_held", "max_connections_held", "first_broken_step", "broken_by",
                     "limit_found", "generator_limited",
                     "cpu_pct_per_call_median", "cpu_s_per_call_s_median", "cpu_pct_per_call_at_largest",
                     "server_cores", "statement", "calls_per_core"}


def run_tool(tmp_path: Path, *args: str, timeout: float = 280) -> tuple[dict[str, Any], subprocess.CompletedProcess[str],
                                                                          float]:
    out = tmp_path / "result.json"
    env = {**os.environ, "TEST_POSTGRES_URL": POSTGRES_URL, "TEST_REDIS_URL": REDIS_URL}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.loadtest", "--quiet", "--json", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result == json.loads(out.read_text()), "the JSON file and the last line of output differ"
    return result, proc, elapsed


def assert_bookkeeping(result: dict[str, Any]) -> None:
    b = result["bookkeeping"]
    assert BOOKKEEPING_FIELDS <= set(b), BOOKKEEPING_FIELDS - set(b)
    assert all(b["checks"].values()), b["checks"]
    assert b["all_ended"] and b["counts_add_up"]
    assert b["calls_started"] == b["calls_ended"] == b["calls_verified_ended"] > 0
    assert b["calls_verified_open"] == 0 and b["connections_left"] == 0
    assert b["calls_set_up_attempted"] == b["calls_connected"] + b["calls_failed"]
    assert b["chat_sent"] == b["chat_delivered"] + b["chat_lost"]
    assert sum(s["setups"] for s in result["steps"]) + b["setups_unreported"] == b["calls_set_up_attempted"]


def assert_fields(result: dict[str, Any]) -> None:
    assert RESULT_FIELDS <= set(result), RESULT_FIELDS - set(result)
    assert CONCLUSION_FIELDS <= set(result["conclusion"]), CONCLUSION_FIELDS - set(result["conclusion"])
    media = result["mode"] != "signalling"
    for step in result["steps"]:
        assert STEP_FIELDS <= set(step), STEP_FIELDS - set(step)
        for key in ("request_to_accept_ms", "accept_to_connected_ms", "signal_relay_rtt_ms", "ping_rtt_ms",
                    "notes_save_ms"):
            assert set(step[key]) == DIST_FIELDS, key
        assert set(step["chat"]) == {"sent", "delivered", "lost", "relay_ms"}
        assert SERVER_FIELDS <= set(step["server"]), SERVER_FIELDS - set(step["server"])
        assert step["server"]["processes"] and all(PROCESS_FIELDS <= set(p) for p in step["server"]["processes"])
        assert GENERATOR_FIELDS <= set(step["generator"])
        assert {"checks", "held", "broken"} == set(step["slo"])
        if media:
            assert FRAME_FIELDS == set(step["frames"])
            assert TRANSCRIPT_FIELDS == set(step["transcripts"])
        else:
            assert step["frames"] is None and step["transcripts"] is None


# ---------------------------------------------------------------- short real runs


@pytest.mark.slow
def test_media_ramp_runs_to_its_last_step_and_every_call_ends(tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    result, proc, _ = run_tool(tmp_path, "--quick", "--mode", "media", "--steps", "1,2", "--keep-going",
                               "--chart", str(png), *RELAXED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_fields(result)
    assert_bookkeeping(result)
    assert result["stopped_by"] == "steps_done"
    assert [s["target_calls"] for s in result["steps"]] == [1, 2]
    assert [s["calls"] for s in result["steps"]] == [1, 2]
    assert [s["connections"] for s in result["steps"]][-1] >= 4     # two calls, and an idle racer
    assert result["bookkeeping"]["calls_started"] == 2
    for step in result["steps"]:
        assert step["frames"]["sent"] > 0 and step["frames"]["received"] <= step["frames"]["sent"]
        assert step["ping_rtt_ms"]["n"] > 0 and step["server"]["cpu_s"] > 0
        assert set(step["server"]["gc_by_generation"]) == {"0", "1", "2"}
        assert step["server"]["loop_lag_p99_ms"] is not None and step["server"]["gc_pause_total_ms"] is not None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stopped by: steps_done" in proc.stdout


@pytest.mark.slow
def test_signalling_run_stops_at_max_calls(tmp_path: Path) -> None:
    result, proc, _ = run_tool(tmp_path, "--quick", "--mode", "signalling", "--steps", "1,2,3", "--max-calls", "2",
                               "--keep-going", *RELAXED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_fields(result)
    assert_bookkeeping(result)
    assert result["stopped_by"] == "max_calls"
    assert result["plan"]["steps"] == [1, 2]
    assert max(s["calls"] for s in result["steps"]) == 2
    assert result["bookkeeping"]["calls_started"] == 2
    assert sum(s["chat"]["sent"] for s in result["steps"]) > 0


@pytest.mark.slow
def test_hold_stops_at_its_duration(tmp_path: Path) -> None:
    result, proc, _ = run_tool(tmp_path, "--quick", "--mode", "signalling", "--hold", "2", "--duration", "6",
                               "--step-seconds", "2", "--keep-going", *RELAXED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_bookkeeping(result)
    assert result["stopped_by"] == "duration"
    last = result["steps"][-1]
    assert last["t"] + last["window_s"] <= 6.0 + 0.5     # measuring stopped at the bound
    assert all(s["calls"] == 2 for s in result["steps"]) and len(result["steps"]) >= 1
    assert result["bookkeeping"]["calls_started"] == 2   # held: no call added after the first ramp


@pytest.mark.slow
def test_broken_service_level_stops_the_run_at_that_step(tmp_path: Path) -> None:
    result, proc, _ = run_tool(tmp_path, "--quick", "--mode", "signalling", "--steps", "1,2,3",
                               "--slo-rtt-p99-ms", "0.001", *RELAXED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_bookkeeping(result)
    assert result["stopped_by"] == "slo"
    assert len(result["steps"]) == 1 and result["steps"][0]["slo"]["broken"] == ["ping_rtt_p99_ms"]
    assert result["conclusion"]["last_held_step"] is None
    assert result["conclusion"]["limit_found"] is True


# ---------------------------------------------------------------- the arithmetic


def worker_reply(**over: Any) -> dict[str, Any]:
    reply = {
        "pings": [0.002] * 50, "lags": [0.001] * 100, "ramp_lags": [0.001] * 10, "notes": [0.01], "relays": [0.02],
        "setups": [{"ok": True, "request_to_accept": 0.1, "accept_to_connected": 0.3}],
        "errors": {}, "races": {"requests": 1, "winners_1": 1},
        "chat": {"sent": 4, "acked": 4, "delivered": 4, "relay": [0.01] * 4},
        "transcripts": {"utterances": 3, "untranscribed": 0, "latency": [1.0, 1.2, 1.4]},
        "frames": {"packets_sent": 1000, "packets_lost": 0, "frames": 1000, "late_frames": 0, "p2p_sent": 0,
                   "p2p_received": 0},
        "cpu_s": 0.5, "cpu_wall_s": 10.0, "active_calls": 2, "connections": 5,
    }
    reply.update(over)
    return reply


def step_from(replies: list[dict[str, Any]], mode: str = "transcription", limits: Limits | None = None,
              cpu_s: float = 2.0) -> dict[str, Any]:
    return summarise_step(index=1, target=4, mode=mode, window_s=10.0, ramp_s=2.0, workers=replies,
                          server={"processes": [{"label": "server0", "pid": 1, "url": None, "cpu_s": cpu_s,
                                                 "rss_mb": 100.0, "rss_peak_mb": 120.0, "alive": True}],
                                  "ramp_cpu_s": 1.0},
                          aux={}, metrics={"backlog": [0, 2, 1], "dropped_delta": 0}, limits=limits or Limits(),
                          server_cores=1)


def test_step_figures_add_up_over_workers() -> None:
    step = step_from([worker_reply(), worker_reply()])
    assert step["calls"] == 4 and step["connections"] == 10 and step["setups"] == 2
    assert step["chat"] == {"sent": 8, "delivered": 8, "lost": 0, "relay_ms": step["chat"]["relay_ms"]}
    assert step["frames"]["sent"] == 2000 and step["frames"]["received_fraction"] == 1.0
    assert step["transcripts"]["utterances"] == 6 and step["transcripts"]["latency_ms"]["p95"] == 1400.0
    assert step["transcripts"]["backlog_max"] == 2
    assert step["server"]["cpu_pct"] == 20.0 and step["server"]["cpu_pct_per_call"] == 5.0
    assert step["server"]["cpu_s_per_call_s"] == 0.05 and step["server"]["ramp_cpu_pct"] == 50.0
    assert step["valid"] and step["slo"]["held"], step["slo"]


def test_a_lagging_generator_makes_the_step_invalid_whatever_the_server_did() -> None:
    lagging = worker_reply(lags=[0.001] * 90 + [0.2] * 10)
    step = step_from([worker_reply(), lagging])
    assert not step["valid"] and "loop lag" in step["invalid_reasons"][0]
    late = worker_reply(frames={"packets_sent": 1000, "packets_lost": 0, "frames": 1000, "late_frames": 50})
    step = step_from([late])
    assert not step["valid"] and "late" in step["invalid_reasons"][0]
    ramp_only = step_from([worker_reply(ramp_lags=[0.5] * 10)])
    assert ramp_only["valid"] and not ramp_only["setup_judged"]
    assert "accept_to_connected_p95_s" not in ramp_only["slo"]["checks"]


def test_service_levels_break_on_latency_loss_and_lost_chat() -> None:
    slow = step_from([worker_reply(transcripts={"utterances": 3, "untranscribed": 1, "latency": [1.0, 1.0, 5.0]})])
    assert slow["slo"]["broken"] == ["transcript_latency_p95_s"]
    lost = step_from([worker_reply(chat={"sent": 4, "acked": 4, "delivered": 3, "relay": [0.01] * 3})])
    assert lost["slo"]["broken"] == ["chat_lost"]
    frames = step_from([worker_reply(frames={"packets_sent": 1000, "packets_lost": 50, "frames": 1000,
                                             "late_frames": 0})])
    assert frames["slo"]["broken"] == ["frame_loss"]
    dropped = summarise_step(index=1, target=4, mode="media", window_s=10.0, ramp_s=2.0, workers=[worker_reply()],
                             server={"processes": []}, aux={}, metrics={"dropped_delta": 30}, limits=Limits(),
                             server_cores=1)
    assert dropped["frames"]["loss_fraction"] == 0.03 and dropped["slo"]["broken"] == ["frame_loss"]
    setup = step_from([worker_reply(setups=[{"ok": True, "request_to_accept": 0.1, "accept_to_connected": 2.5}])])
    assert setup["slo"]["broken"] == ["accept_to_connected_p95_s"]
    failed = step_from([worker_reply(setups=[{"ok": False, "error": "join"}], errors={"call.join:timeout": 1})])
    assert set(failed["slo"]["broken"]) == {"failed_calls", "errors"}
    assert failed["setup_failures"] == {"join": 1}
    # transcript latency is a service level of the transcription mode only
    assert step_from([worker_reply(transcripts={"utterances": 1, "untranscribed": 1, "latency": [9.0]})],
                     mode="media")["slo"]["held"]
    assert judge(step_from([worker_reply()]), "transcription", Limits(rtt_p99_ms=1.0))["broken"] == ["ping_rtt_p99_ms"]


def test_conclusion_gives_capacity_only_when_a_valid_step_broke() -> None:
    held = step_from([worker_reply()])
    broke = step_from([worker_reply(chat={"sent": 4, "acked": 4, "delivered": 0, "relay": []})])
    found = conclude([held, {**broke, "step": 2}], "slo", "media", 1)
    assert found["limit_found"] and found["max_calls_held"] == 2 and found["calls_per_core"] == 2.0
    assert "chat_lost" in found["statement"] and found["first_broken_step"] == 2
    kept_going = conclude([held, {**broke, "step": 2}, {**held, "step": 3, "calls": 9}], "steps_done", "media", 1)
    assert kept_going["max_calls_held"] == 2 and kept_going["limit_found"]   # a step held after a break: not counted
    invalid = {**step_from([worker_reply(lags=[0.3] * 100)]), "step": 2}
    limited = conclude([held, invalid], "generator", "media", 1)
    assert limited["generator_limited"] and limited["calls_per_core"] is None
    assert limited["cpu_pct_per_call_at_largest"] == 10.0 and "no capacity is extrapolated" in limited["statement"]
    assert conclude([], "error", "media", 1)["last_held_step"] is None


def test_bookkeeping_notices_a_call_left_open() -> None:
    reply = {"calls_started": 2, "calls_connected": 2, "calls_failed": 0, "calls_ended": 1,
             "calls_set_up_attempted": 2, "calls_verified_ended": 1, "calls_verified_open": 1,
             "calls_verify_errors": 0, "requests": 2, "requests_cancelled": 0, "requests_refused": 0,
             "requests_stranded": 0, "chat_sent": 3, "chat_acked": 3, "chat_delivered": 3, "connections_left": 0,
             "setups_unreported": 0, "errors": {}}
    steps = [{"setups": 2, "calls": 2}]
    out = add_up([reply], steps)
    assert not out["all_ended"] and not out["checks"]["every_started_call_ended"]
    fine = add_up([{**reply, "calls_ended": 2, "calls_verified_ended": 2, "calls_verified_open": 0}], steps)
    assert fine["all_ended"] and fine["counts_add_up"]


def test_steps_and_bounds_parse() -> None:
    assert parse_steps("1,2,4:12:4") == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError):
        parse_steps("4,2")
    args = parse_args(["--steps", "2,4,8", "--max-calls", "6"])
    assert plan(args) == ([2, 4, 6], True)
    assert plan(parse_args(["--hold", "3", "--duration", "10"])) == ([3], False)
    quick = parse_args(["--quick"])
    assert quick.mode == "signalling" and quick.database_url == "sqlite" and plan(quick) == ([1, 2], False)
    assert parse_cpus("0-2,5") == {0, 1, 2, 5}


def test_transcript_segments_go_to_the_utterance_whose_region_holds_them() -> None:
    clip = EncodedClip("c", [b"x"] * 250, 200)           # 5 s of audio, speech ends at 4 s
    worker = SimpleNamespace(stats=Stats())
    call = SimCall(worker, "k", None)  # type: ignore[arg-type]
    call.created_at = 1000.0
    call.link_offer["client"] = (1000.5, 1000.6)       # the server's stream starts 500 ms into the call
    first, second = Utterance(clip, "client", start_frame=0), Utterance(clip, "client", start_frame=500)
    first.sent_end_at, second.sent_end_at = 10.0, 20.0
    call.utterances["client"] = [first, second]
    # positions in the speaker's stream: first 0-5 s, second 10-15 s; call time adds the 500 ms offset
    call.on_transcript({"speaker": "client", "start_ms": 600, "end_ms": 4400}, 11.0)
    call.on_transcript({"speaker": "client", "start_ms": 10600, "end_ms": 14400}, 21.5)
    call.on_transcript({"speaker": "client", "start_ms": 7000, "end_ms": 7400}, 12.0)   # 6.5-6.9 s: still the first
    assert first.arrivals == [11.0, 12.0] and second.arrivals == [21.5]
    assert first.latency(30.0) == (2.0, True) and second.latency(30.0) == (1.5, True)
    assert Utterance(clip, "client", start_frame=0, sent_end_at=10.0).latency(14.0) == (4.0, False)
    call.on_transcript({"speaker": "therapist", "start_ms": 0, "end_ms": 100}, 1.0)
    assert worker.stats.errors["transcript:unmatched"] == 1


def test_process_figures_come_from_proc() -> None:
    t0 = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - t0 >= 0.1
    rss, peak = memory_mb(os.getpid())
    assert 0 < rss <= peak
    watch = ProcessWatch([Watched("me", os.getpid())])
    a = watch.sample()
    b = watch.sample()
    server, aux = ProcessWatch.delta(a, b)
    assert server["processes"][0]["alive"] and server["processes"][0]["cpu_s"] >= 0 and aux == {}
    assert cpu_seconds(2 ** 22 + 12345) is None
    text = "# HELP x\ntranscription_backlog 3.0\nmedia_frames_dropped{a=\"b\"} 2\nmedia_frames_dropped 1\n"
    assert parse_metrics(text, ["transcription_backlog", "media_frames_dropped"]) == {
        "transcription_backlog": 3.0, "media_frames_dropped": 3.0}
    assert pct([3, 1, 2], 50) == 2 and pct([], 99) is None


def test_chart_draws_several_runs(tmp_path: Path) -> None:
    held = step_from([worker_reply()])
    second = {**step_from([worker_reply(active_calls=4)], cpu_s=4.0), "step": 2}
    result = {"mode": "transcription", "label": "t", "steps": [held, second]}
    path = tmp_path / "c.png"
    chart([result, {**result, "mode": "media", "label": "m"}], str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"


def scrape_text(gen2: list[tuple[str, float]], gen2_sum: float, lag: list[tuple[str, float]], lag_sum: float,
                gen2_recent: float, lag_recent: float, gc_cpu: float) -> str:
    lines = ["# HELP gc_pause_seconds x", "# TYPE gc_pause_seconds histogram"]
    lines += [f'gc_pause_seconds_bucket{{generation="2",le="{le}"}} {n}' for le, n in gen2]
    lines += [f'gc_pause_seconds_count{{generation="2"}} {gen2[-1][1]}', f'gc_pause_seconds_sum{{generation="2"}} {gen2_sum}',
              'gc_pause_seconds_bucket{generation="0",le="+Inf"} 50', 'gc_pause_seconds_count{generation="0"} 50',
              'gc_pause_seconds_sum{generation="0"} 0.01']
    lines += [f'event_loop_lag_seconds_bucket{{le="{le}"}} {n}' for le, n in lag]
    lines += [f"event_loop_lag_seconds_count {lag[-1][1]}", f"event_loop_lag_seconds_sum {lag_sum}",
              f'gc_pause_recent_max_seconds{{generation="2"}} {gen2_recent}',
              f"event_loop_lag_recent_max_seconds {lag_recent}",
              f'gc_cpu_seconds_total{{generation="2"}} {gc_cpu}', 'gc_cpu_seconds_total{generation="0"} 0.01']
    return "\n".join(lines) + "\n"


def test_server_loop_figures_come_from_histogram_deltas_and_recent_maxima() -> None:
    first = scrape_text([("0.1", 1), ("0.2", 1), ("0.3", 1), ("+Inf", 1)], 0.05,
                        [("0.01", 100), ("0.1", 100), ("0.2", 100), ("+Inf", 100)], 0.1, 0.05, 0.004, 0.04)
    # in the window: two full collections, of 150 and 260 ms; 100 ticks, 98 short, 2 held by those collections
    last = scrape_text([("0.1", 1), ("0.2", 2), ("0.3", 3), ("+Inf", 3)], 0.46,
                       [("0.01", 198), ("0.1", 198), ("0.2", 199), ("+Inf", 200)], 0.6, 0.26, 0.27, 0.34)
    hist = parse_histograms(last, ["gc_pause_seconds", "event_loop_lag_seconds"])
    assert hist["gc_pause_seconds:2"]["count"] == 3 and hist["gc_pause_seconds:0"]["count"] == 50
    assert hist["event_loop_lag_seconds"]["buckets"][float("inf")] == 200
    assert recent_max(last) == {"gc_pause_seconds:2": 0.26, "event_loop_lag_seconds": 0.27}

    def scraped(text: str) -> dict[str, Any]:
        return {"histograms": parse_histograms(text, ["gc_pause_seconds", "event_loop_lag_seconds"]),
                "recent_max": recent_max(text), **parse_metrics(text, ["gc_cpu_seconds_total"]),
                "gc_cpu": by_label(text, "gc_cpu_seconds_total", "generation")}

    a, b = scraped(first), scraped(last)
    figures = loop_figures(a, b, [b["recent_max"]])
    assert figures["gc_by_generation"]["2"] == {"count": 2, "total_ms": 410.0, "max_ms": 260.0, "cpu_ms": 300.0}
    assert figures["gc_by_generation"]["0"] == {"count": 0, "total_ms": 0.0, "max_ms": None, "cpu_ms": 0.0}
    assert figures["gc_pause_max_ms"] == 260.0 and figures["gc_pause_total_ms"] == 410.0
    assert figures["gc_cpu_ms"] == 300.0      # the collector's own CPU time: less than the pauses on a busy machine
    step = summarise_step(index=1, target=4, mode="signalling", window_s=10.0, ramp_s=2.0, workers=[worker_reply()],
                          server={"processes": [{"label": "server0", "pid": 1, "url": None, "cpu_s": 3.0,
                                                 "rss_mb": 100.0, "rss_peak_mb": 120.0, "alive": True}]},
                          aux={}, metrics={"loop": figures}, limits=Limits(), server_cores=1)
    assert step["server"]["gc_cpu_share"] == 0.1 and step["server"]["loop_lag_max_ms"] == 270.0
    assert figures["loop_lag_p99_ms"] == 200.0           # rank 99 of 100: the top of the 100-200 ms bucket
    assert figures["loop_lag_max_ms"] == 270.0            # past the last finite bound: the gauge says how far
    # a gauge still showing a pause from before the window is not taken for one inside it: the bucket's bound is
    stale = {**b["recent_max"], "gc_pause_seconds:2": 0.9}
    assert loop_figures(a, b, [stale])["gc_pause_max_ms"] == 300.0
    assert loop_figures(None, None)["loop_lag_p99_ms"] is None
    assert histogram_quantile({"buckets": {0.01: 50.0, 0.1: 100.0, float("inf"): 100.0}, "sum": 1.0, "count": 100.0},
                              0.75) == pytest.approx(0.055)
