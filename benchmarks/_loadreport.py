"""The load test's figures: one step summarised from what the workers and the server reported, its validity (did the
generator keep up?) and service levels, the run's conclusion, the terminal table and the PNG chart.

Pure functions of plain data (the workers' `collect` answers, CPU samples), so the tests can feed them by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence


@dataclass
class Limits:
    """Service levels (a step holds when every one that applies is met) and the generator's own bounds (a step
    where the generator fell behind is invalid: not counted, whatever the server did)."""

    request_p95_s: float = 2.0        # pool.request -> the offer reaches the client
    setup_p95_s: float = 2.0          # pool.respond (accept) -> connected
    rtt_p99_ms: float = 50.0          # session.ping round trip
    transcript_p95_s: float = 3.0     # end of speech -> its last segment at the therapist (transcription mode)
    frame_loss: float = 0.01          # fraction of audio packets lost (server's RTCP reports) or dropped by its sinks
    chat_lost: int = 0                # chat messages not delivered to the other member within chat_timeout
    failed_calls: int = 0             # set-ups that failed
    errors: int = 0                   # errors of any kind (failed acks, timeouts, dropped connections)
    loop_lag_p99_ms: float = 50.0     # generator: each worker's event-loop lag (50 ms ticker)
    late_frames: float = 0.01         # generator: fraction of audio frames sent later than late_frame_ms
    late_frame_ms: float = 50.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


LOOP_FIELDS = ("gc_pause_max_ms", "gc_pause_total_ms", "gc_by_generation", "gc_cpu_ms", "loop_lag_p99_ms",
               "loop_lag_max_ms")


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def dist(values: Sequence[float], scale: float = 1000.0, digits: int = 1) -> dict[str, Any]:
    """n, p50, p95, p99, max (values in seconds, reported in ms by default)."""
    def r(v: float | None) -> float | None:
        return None if v is None else round(v * scale, digits)

    return {"n": len(values), "p50": r(pct(values, 50)), "p95": r(pct(values, 95)), "p99": r(pct(values, 99)),
            "max": r(max(values) if values else None)}


def _merge(results: Iterable[dict[str, Any]], key: str) -> list[Any]:
    out: list[Any] = []
    for r in results:
        out.extend(r.get(key, []))
    return out


def _sum_counts(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + int(v)
    return dict(sorted(total.items()))


def summarise_step(*, index: int, target: int, mode: str, window_s: float, ramp_s: float,
                   workers: list[dict[str, Any]], server: dict[str, Any], aux: dict[str, Any],
                   metrics: dict[str, Any], limits: Limits, server_cores: int | None,
                   previous: dict[str, Any] | None = None, transcribing: bool = True) -> dict[str, Any]:
    """One step's figures from the workers' `collect` answers and the server samples.

    `server`: {"processes": [{"label", "pid", "cpu_s", "rss_mb", "rss_peak_mb"}]} measured over the window;
    `aux`: {name: {"cpu_s", "rss_mb"}} (database, Redis); `metrics`: the server's /metrics over the window
    ({"backlog": [samples], "peers": [...], "dropped_delta": n, "compute_per_audio": [...], "loop":
    `benchmarks._loadhost.loop_figures`}); `transcribing`: whether
    the server is expected to send transcripts (not in media mode with utterances parked)."""
    setups = _merge(workers, "setups")
    ok_setups = [s for s in setups if s.get("ok")]
    calls = sum(int(w.get("active_calls", 0)) for w in workers)
    connections = sum(int(w.get("connections", 0)) for w in workers)
    errors = _sum_counts(w.get("errors", {}) for w in workers)
    races = _sum_counts(w.get("races", {}) for w in workers)
    chats = [w.get("chat", {}) for w in workers]
    chat_sent = sum(int(c.get("sent", 0)) for c in chats)
    chat_delivered = sum(int(c.get("delivered", 0)) for c in chats)
    frames = _sum_counts(w.get("frames", {}) for w in workers)
    trans = [w.get("transcripts", {}) for w in workers]
    utter = sum(int(t.get("utterances", 0)) for t in trans)
    waiting = sum(int(t.get("untranscribed", 0)) for t in trans)
    latencies = [x for t in trans for x in t.get("latency", [])]

    # the generator
    worker_rows = []
    for n, w in enumerate(workers):
        lags, ramp = w.get("lags", []), w.get("ramp_lags", [])
        wall = float(w.get("cpu_wall_s") or 0) or window_s
        wf = w.get("frames", {})
        worker_rows.append({
            "worker": n, "calls": w.get("active_calls", 0), "connections": w.get("connections", 0),
            "loop_lag_ms": dist(lags), "ramp_loop_lag_p99_ms": dist(ramp)["p99"],
            "cpu_pct": round(100 * float(w.get("cpu_s", 0)) / wall, 1) if wall else None,
            "frames": wf.get("frames", 0), "late_frames": wf.get("late_frames", 0),
        })
    lag_p99 = max((r["loop_lag_ms"]["p99"] or 0.0 for r in worker_rows), default=0.0)
    ramp_lag_p99 = max((r["ramp_loop_lag_p99_ms"] or 0.0 for r in worker_rows), default=0.0)
    frames_sent = int(frames.get("frames", 0))
    late_fraction = (frames.get("late_frames", 0) / frames_sent) if frames_sent else 0.0
    invalid = []
    if lag_p99 > limits.loop_lag_p99_ms:
        invalid.append(f"generator loop lag p99 {lag_p99:.0f} ms > {limits.loop_lag_p99_ms:.0f} ms")
    if late_fraction > limits.late_frames:
        invalid.append(f"{100 * late_fraction:.1f} % of audio frames sent late (> {limits.late_frames * 100:g} %)")
    if window_s <= 0:
        invalid.append("no measurement window")
    setup_judged = ramp_lag_p99 <= limits.loop_lag_p99_ms
    generator = {
        "workers": worker_rows, "loop_lag_p99_ms": lag_p99, "ramp_loop_lag_p99_ms": ramp_lag_p99,
        "late_frames": int(frames.get("late_frames", 0)), "late_frame_fraction": round(late_fraction, 5),
        "cpu_pct": round(sum(r["cpu_pct"] or 0 for r in worker_rows), 1),
    }

    # the server
    procs = server.get("processes", [])
    cpu_s = sum(float(p.get("cpu_s") or 0) for p in procs)
    cpu_pct = 100 * cpu_s / window_s if window_s > 0 else None
    server_out = {
        "processes": [{**p, "cpu_pct": round(100 * float(p.get("cpu_s") or 0) / window_s, 1) if window_s > 0 else None}
                      for p in procs],
        "cpu_s": round(cpu_s, 3), "cpu_pct": None if cpu_pct is None else round(cpu_pct, 1),
        "cpu_s_per_call_s": round(cpu_s / (calls * window_s), 5) if calls and window_s > 0 else None,
        "cpu_pct_per_call": round(cpu_pct / calls, 2) if calls and cpu_pct is not None else None,
        "cpu_pct_per_connection": round(cpu_pct / connections, 3) if connections and cpu_pct is not None else None,
        "ramp_cpu_pct": round(100 * float(server["ramp_cpu_s"]) / ramp_s, 1) if server.get("ramp_cpu_s") is not None
        and ramp_s > 0 else None,
        "rss_mb": round(sum(float(p.get("rss_mb") or 0) for p in procs), 1),
        "cores": server_cores,
        "core_utilisation": round(cpu_pct / (100 * server_cores), 3) if server_cores and cpu_pct is not None else None,
    }
    # what held the event loop (the servers' /metrics, all processes): collections and loop lag over the window
    loop = metrics.get("loop") or {}
    for key in LOOP_FIELDS:
        server_out[key] = loop.get(key)
    # the share of the servers' CPU time that went to collections (robust on a busy machine, unlike the pauses)
    server_out["gc_cpu_share"] = round(loop["gc_cpu_ms"] / 1000 / cpu_s, 3) \
        if loop.get("gc_cpu_ms") is not None and cpu_s > 0 else None
    if previous is not None and previous.get("calls") and calls != previous["calls"] \
            and previous["server"].get("cpu_pct") is not None and cpu_pct is not None:
        server_out["marginal_cpu_pct_per_call"] = round(
            (cpu_pct - previous["server"]["cpu_pct"]) / (calls - previous["calls"]), 2)
    else:
        server_out["marginal_cpu_pct_per_call"] = None
    aux_out = {name: {**v, "cpu_pct": round(100 * float(v.get("cpu_s", 0)) / window_s, 1) if window_s > 0 else None}
               for name, v in aux.items()}

    backlog = metrics.get("backlog", [])
    packets_sent = int(frames.get("packets_sent", 0))
    packets_lost = int(frames.get("packets_lost", 0))
    media = mode != "signalling"
    step: dict[str, Any] = {
        "step": index, "target_calls": target, "calls": calls, "connections": connections,
        "window_s": round(window_s, 2), "ramp_s": round(ramp_s, 2),
        "setups": len(setups), "setups_failed": len(setups) - len(ok_setups),
        "setup_failures": _sum_counts({str(s.get("error", "failed")): 1} for s in setups if not s.get("ok")),
        "request_to_accept_ms": dist([s["request_to_accept"] for s in ok_setups if "request_to_accept" in s]),
        "accept_to_connected_ms": dist([s["accept_to_connected"] for s in ok_setups if "accept_to_connected" in s]),
        "signal_relay_rtt_ms": dist(_merge(workers, "relays")),
        "ping_rtt_ms": dist(_merge(workers, "pings"), digits=2),
        "ping_stalls": stalls(_merge(workers, "ping_times"), limits.rtt_p99_ms / 1000),
        "notes_save_ms": dist(_merge(workers, "notes")),
        "chat": {"sent": chat_sent, "delivered": chat_delivered, "lost": chat_sent - chat_delivered,
                 "relay_ms": dist([x for c in chats for x in c.get("relay", [])])},
        "races": races,
        "frames": {
            "sent": packets_sent, "lost": packets_lost, "received": packets_sent - packets_lost,
            "received_fraction": round((packets_sent - packets_lost) / packets_sent, 5) if packets_sent else None,
            "server_dropped": metrics.get("dropped_delta"),
            # lost on the way (RTCP) or dropped by the server's sinks that fell behind: audio nobody will hear
            "loss_fraction": round((packets_lost + int(metrics.get("dropped_delta") or 0)) / packets_sent, 5)
            if packets_sent else None,
            "p2p_sent": int(frames.get("p2p_sent", 0)), "p2p_received": int(frames.get("p2p_received", 0)),
        } if media else None,
        "transcripts": {
            "expected": transcribing, "utterances": utter, "untranscribed": waiting,
            "latency_ms": dist(latencies if transcribing else []),
            "backlog_max": max(backlog) if backlog else None,
            "backlog_mean": round(sum(backlog) / len(backlog), 2) if backlog else None,
            "compute_per_audio_max": max(metrics.get("compute_per_audio", []) or [None],
                                         key=lambda v: -1 if v is None else v),
        } if media else None,
        "errors": errors, "error_count": sum(errors.values()),
        "server": server_out, "aux": aux_out, "generator": generator,
        "valid": not invalid, "invalid_reasons": invalid, "setup_judged": setup_judged,
    }
    step["slo"] = judge(step, mode, limits)
    return step


def stalls(timed: list[list[float]], limit_s: float, top: int = 5) -> list[list[float]]:
    """The seconds of the window (from its start) whose slowest round trip was over `limit_s`: [second, ms, how
    many pings in that second were over], slowest first. Spread over the window: load; bunched: a stall."""
    worst: dict[int, list[float]] = {}
    for at, rtt in timed:
        if rtt > limit_s:
            entry = worst.setdefault(int(at), [int(at), 0.0, 0])
            entry[1] = max(entry[1], round(rtt * 1000, 1))
            entry[2] += 1
    return sorted(worst.values(), key=lambda e: -e[1])[:top]


def judge(step: dict[str, Any], mode: str, limits: Limits) -> dict[str, Any]:
    """Every service level that applies to the step: value, limit, ok; `held` when all are ok."""
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float | None, limit: float, note: str = "") -> None:
        if value is None:
            return
        checks[name] = {"value": value, "limit": limit, "ok": value <= limit, **({"note": note} if note else {})}

    if step["setup_judged"]:
        p95 = step["request_to_accept_ms"]["p95"]
        check("request_to_accept_p95_s", None if p95 is None else p95 / 1000, limits.request_p95_s)
        p95 = step["accept_to_connected_ms"]["p95"]
        check("accept_to_connected_p95_s", None if p95 is None else p95 / 1000, limits.setup_p95_s)
    check("ping_rtt_p99_ms", step["ping_rtt_ms"]["p99"], limits.rtt_p99_ms)
    check("chat_lost", step["chat"]["lost"] if step["chat"]["sent"] else None, limits.chat_lost)
    check("failed_calls", step["setups_failed"], limits.failed_calls)
    check("errors", step["error_count"], limits.errors)
    if step["frames"] is not None and step["frames"]["sent"]:
        check("frame_loss", step["frames"]["loss_fraction"], limits.frame_loss)
    if mode == "transcription" and step["transcripts"] is not None:
        p95 = step["transcripts"]["latency_ms"]["p95"]
        check("transcript_latency_p95_s", None if p95 is None else p95 / 1000, limits.transcript_p95_s)
    broken = [name for name, c in checks.items() if not c["ok"]]
    return {"checks": checks, "held": not broken, "broken": broken}


# ---------------------------------------------------------------- the run's conclusion


def conclude(steps: list[dict[str, Any]], stopped_by: str, mode: str, server_cores: int | None) -> dict[str, Any]:
    """The last step that held before the first valid step that broke a service level, the largest number of calls
    held at a valid step, and capacity per core when a valid step then broke them; when the generator (or a bound)
    stopped the run first, the per-call cost instead, never an extrapolation."""
    broke = next((s for s in steps if s["valid"] and not s["slo"]["held"]), None)
    before = steps if broke is None else steps[:steps.index(broke)]
    held = [s for s in before if s["valid"] and s["slo"]["held"]]
    last_held = held[-1]["step"] if held else None
    best = max(held, key=lambda s: s["calls"]) if held else None
    limit_found = broke is not None
    costs = [s["server"]["cpu_pct_per_call"] for s in held if s["server"]["cpu_pct_per_call"] is not None]
    cost_s = [s["server"]["cpu_s_per_call_s"] for s in held if s["server"]["cpu_s_per_call_s"] is not None]
    per_call = {"cpu_pct_per_call_median": pct(costs, 50), "cpu_s_per_call_s_median": pct(cost_s, 50),
                "cpu_pct_per_call_at_largest": best["server"]["cpu_pct_per_call"] if best else None}
    out: dict[str, Any] = {
        "last_held_step": last_held, "max_calls_held": best["calls"] if best else None,
        "max_connections_held": best["connections"] if best else None,
        "first_broken_step": broke["step"] if broke else None,
        "broken_by": broke["slo"]["broken"] if broke else [],
        "limit_found": limit_found, "generator_limited": stopped_by == "generator", **per_call,
        "server_cores": server_cores, "calls_per_core": None,
    }
    if best is None:
        out["statement"] = ("no step held its service levels at a valid step"
                            + (f" (step {broke['step']} broke {', '.join(broke['slo']['broken'])})" if broke else ""))
    elif limit_found:
        if server_cores:
            out["calls_per_core"] = round(best["calls"] / server_cores, 2)
        where = (f"the server ({server_cores} core{'s' if server_cores > 1 else ''})" if server_cores
                 else "the server (not pinned: no per-core figure)")
        out["statement"] = (f"{where} held {best['calls']} calls ({best['connections']} connections) within its service "
                            f"levels; step {broke['step']} ({broke['calls']} calls) broke "
                            f"{', '.join(broke['slo']['broken'])}")
    else:
        why = {"generator": "the load generator fell behind first",
               "max_calls": "the run stopped at --max-calls", "duration": "the run stopped at --duration",
               "steps_done": "the steps ran out", "interrupted": "the run was interrupted",
               "error": "the run failed"}.get(stopped_by, stopped_by)
        cost = per_call["cpu_pct_per_call_at_largest"]
        out["statement"] = (f"limit not found ({why}): the server held {best['calls']} calls "
                            f"({best['connections']} connections) at {best['server']['cpu_pct']} % of a core"
                            + (f", {cost} % of a core per call" if cost is not None else "")
                            + "; no capacity is extrapolated")
    return out


# ---------------------------------------------------------------- the terminal


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _slash(*values: Any, digits: int = 0) -> str:
    return "/".join(_f(v, digits) for v in values)


def table(result: dict[str, Any]) -> str:
    """Two tables, one row per step: what the simulated people saw, and what it cost."""
    steps = result["steps"]
    media = result["mode"] != "signalling"
    head1 = (f"{'step':>4} {'calls':>5} {'conns':>6} {'req->acc p50/95/99 ms':>22} {'acc->conn p50/95/99 ms':>23} "
             f"{'ping p50/99 ms':>15} {'chat p99 ms':>11} {'lost':>4}"
             + (f" {'transcript p50/95 s':>19} {'n':>4} {'backlog':>7} {'frames rx %':>11}" if media else "")
             + f" {'errors':>6}  result")
    lines = [head1]
    for s in steps:
        t = s["transcripts"] or {}
        lat = (t.get("latency_ms") or {})
        verdict = ("INVALID" if not s["valid"] else "held" if s["slo"]["held"] else
                   "BROKE " + ",".join(s["slo"]["broken"]))
        row = (f"{s['step']:>4} {s['calls']:>5} {s['connections']:>6} "
               f"{_slash(s['request_to_accept_ms']['p50'], s['request_to_accept_ms']['p95'], s['request_to_accept_ms']['p99']):>22} "
               f"{_slash(s['accept_to_connected_ms']['p50'], s['accept_to_connected_ms']['p95'], s['accept_to_connected_ms']['p99']):>23} "
               f"{_slash(s['ping_rtt_ms']['p50'], s['ping_rtt_ms']['p99'], digits=1):>15} "
               f"{_f(s['chat']['relay_ms']['p99'], 1):>11} {s['chat']['lost']:>4}")
        if media:
            fr = s["frames"] or {}
            rx = fr.get("received_fraction")
            row += (f" {_slash(None if lat.get('p50') is None else lat['p50'] / 1000, None if lat.get('p95') is None else lat['p95'] / 1000, digits=2):>19}"
                    f" {t.get('utterances', 0):>4} {_f(t.get('backlog_max')):>7} {_f(None if rx is None else 100 * rx, 2):>11}")
        row += f" {s['error_count']:>6}  {verdict}"
        if not s["setup_judged"]:
            row += " (set-up not judged: generator lagged in the ramp)"
        lines.append(row)
    lines.append("")
    head2 = (f"{'step':>4} {'calls':>5} {'server CPU %':>12} {'ramp CPU %':>10} {'per process %':>16} {'% per call':>10} "
             f"{'marginal %':>10} {'CPU s/call-s':>12} {'RSS MB':>7} {'GC max/total ms':>15} {'GC % CPU':>8} {'lag p99/max ms':>14} "
             f"{'aux CPU %':>22} {'gen CPU %':>9} {'gen lag p99 ms':>14} {'late frames':>11}  invalid because")
    lines.append(head2)
    for s in steps:
        sv, g = s["server"], s["generator"]
        per = "/".join(_f(p.get("cpu_pct"), 0) for p in sv["processes"]) or "-"
        aux = " ".join(f"{k} {_f(v.get('cpu_pct'), 0)}" for k, v in s["aux"].items()) or "-"
        lines.append(
            f"{s['step']:>4} {s['calls']:>5} {_f(sv['cpu_pct'], 1):>12} {_f(sv.get('ramp_cpu_pct'), 0):>10} {per:>16} {_f(sv['cpu_pct_per_call'], 2):>10} "
            f"{_f(sv['marginal_cpu_pct_per_call'], 2):>10} {_f(sv['cpu_s_per_call_s'], 4):>12} {_f(sv['rss_mb'], 0):>7} "
            f"{_slash(sv.get('gc_pause_max_ms'), sv.get('gc_pause_total_ms')):>15} "
            f"{_f(None if sv.get('gc_cpu_share') is None else 100 * sv['gc_cpu_share'], 0):>8} "
            f"{_slash(sv.get('loop_lag_p99_ms'), sv.get('loop_lag_max_ms')):>14} {aux:>22} {_f(g['cpu_pct'], 0):>9} {_f(g['loop_lag_p99_ms'], 1):>14} {g['late_frames']:>11}  "
            + ("; ".join(s["invalid_reasons"]) or "-"))
    return "\n".join(lines)


def progress_line(step: int, steps: int, elapsed: float, window: float, status: dict[str, Any],
                  what: str = "") -> str:
    """`step 2/5 [#####---] 12/30 s  calls …` while measuring; with `what`, the bar counts calls set up."""
    width = 24
    done = 0 if window <= 0 else min(width, int(width * elapsed / window))
    head = what or f"step {step}/{steps}"
    unit = "calls" if what else "s"
    return (f"{head} [{'#' * done}{'-' * (width - done)}] {elapsed:4.0f}/{window:.0f} {unit}  "
            f"calls {status.get('active_calls', 0)}  connections {status.get('connections', 0)}  "
            f"set-ups in flight {status.get('in_flight', 0)}  errors {status.get('errors', 0)}")


# ---------------------------------------------------------------- the chart


def chart(results: list[dict[str, Any]], path: str, title: str | None = None) -> None:
    """Figures against concurrent calls, one line per run: server CPU, its cost per call, set-up and transcript
    latency, signalling round trip. Hollow markers: invalid steps (the generator fell behind); a cross: the step
    broke a service level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_cpu, ax_cost), (ax_lat, ax_rtt) = axes

    def series(ax: Any, res: dict[str, Any], getter: Any, label: str, style: str = "-") -> None:
        pts = [(s["calls"], getter(s), s) for s in res["steps"]]
        pts = [(x, y, s) for x, y, s in pts if y is not None]
        if not pts:
            return
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        for x, y, s in pts:
            face = line.get_color() if s["valid"] else "none"
            ax.plot([x], [y], "o", color=line.get_color(), markerfacecolor=face, markersize=5)
            if s["valid"] and not s["slo"]["held"]:
                ax.plot([x], [y], "x", color="red", markersize=10, markeredgewidth=2)

    for res in results:
        name = res.get("label") or res["mode"]
        series(ax_cpu, res, lambda s: s["server"]["cpu_pct"], name)
        series(ax_cost, res, lambda s: s["server"]["cpu_pct_per_call"], name)
        series(ax_lat, res, lambda s: _s(s["accept_to_connected_ms"]["p95"]), f"{name}: accept->connected p95")
        series(ax_lat, res, lambda s: _s((s["transcripts"] or {}).get("latency_ms", {}).get("p95")),
               f"{name}: transcript p95", "--")
        series(ax_rtt, res, lambda s: s["ping_rtt_ms"]["p99"], f"{name}: ping p99")
    ax_cpu.set(title="server CPU (% of one core, all processes)", xlabel="concurrent calls", ylabel="%")
    ax_cost.set(title="server CPU per call (% of one core)", xlabel="concurrent calls", ylabel="% per call")
    ax_lat.set(title="latency p95 (s)", xlabel="concurrent calls", ylabel="s")
    ax_rtt.set(title="signalling round trip p99 (session.ping, ms)", xlabel="concurrent calls", ylabel="ms")
    ax_cpu.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax_cost.axhline(5, color="grey", linewidth=0.8, linestyle=":")
    ax_lat.axhline(2, color="grey", linewidth=0.8, linestyle=":")
    ax_lat.axhline(3, color="grey", linewidth=0.8, linestyle=":")
    ax_rtt.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if any(r["mode"] == "signalling" for r in results) and any(r["mode"] != "signalling" for r in results):
        for ax in axes.flat:
            ax.set_xscale("log")
        ax_cost.set_yscale("log")   # signalling costs ~0.1 % a call, media and transcription 5-25 %
    fig.suptitle(title or "load test: figures against concurrent calls (hollow: generator-limited step; "
                          "x: service level broken)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _s(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000
