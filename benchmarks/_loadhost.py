"""What the load test reads about the machine: CPU time and memory of processes (from /proc), CPU pinning
(`sched_setaffinity`, what `taskset` does), and the server's own /metrics.

CPU time is utime + stime of every thread of the process (/proc/<pid>/stat), so Whisper's decode threads and the
executor threads count; memory is VmRSS (and VmHWM, the peak) from /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of the process (all its threads), None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS   # utime, stime: fields 14 and 15 of stat


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(resident, peak resident) in MiB, None when the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for key in ("VmRSS", "VmHWM"):
        m = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        values[key] = int(m.group(1)) / 1024 if m else 0.0
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Watched:
    label: str
    pid: int
    url: str | None = None


class ProcessWatch:
    """CPU seconds between two samples, per server process, and for auxiliary services matched by name each time
    (PostgreSQL forks a process per connection: `postgres` sums every postgres process, or only the backends of
    `database` when given, plus the postmaster's helpers)."""

    def __init__(self, servers: list[Watched], aux: Iterable[str] = (), database: str | None = None) -> None:
        self.servers = servers
        self.aux = [a for a in aux if a]
        self.database = database
        self._last: dict[str, Any] | None = None

    def _aux_cpu(self) -> dict[str, float]:
        totals = {name: 0.0 for name in self.aux}
        if not self.aux:
            return totals
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                comm = Path(entry.path, "comm").read_text().strip()
                if not any(comm.startswith(name[:15]) for name in self.aux):
                    continue
                if comm.startswith("postgres") and self.database:
                    cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    backend = " 127.0.0.1(" in cmdline or "[local]" in cmdline
                    if backend and f" {self.database} " not in cmdline:
                        continue
            except OSError:
                continue
            cpu = cpu_seconds(int(entry.name))
            if cpu is None:
                continue
            for name in self.aux:
                if comm.startswith(name[:15]):
                    totals[name] += cpu
        return totals

    def sample(self) -> dict[str, Any]:
        procs = []
        for w in self.servers:
            mem = memory_mb(w.pid) or (0.0, 0.0)
            procs.append({"label": w.label, "pid": w.pid, "url": w.url, "cpu": cpu_seconds(w.pid),
                          "rss_mb": round(mem[0], 1), "rss_peak_mb": round(mem[1], 1)})
        return {"processes": procs, "aux": self._aux_cpu()}

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(server, aux) figures between samples a and b, shaped for `summarise_step`. Processes started or ended
        in between (a new backend) count from zero."""
        procs = []
        for pa, pb in zip(a["processes"], b["processes"]):
            gone = pb["cpu"] is None or pa["cpu"] is None
            procs.append({"label": pb["label"], "pid": pb["pid"], "url": pb["url"],
                          "cpu_s": None if gone else round(pb["cpu"] - pa["cpu"], 3),
                          "rss_mb": pb["rss_mb"], "rss_peak_mb": pb["rss_peak_mb"], "alive": pb["cpu"] is not None})
        aux = {k: {"cpu_s": round(max(0.0, b["aux"].get(k, 0.0) - a["aux"].get(k, 0.0)), 3)} for k in b["aux"]}
        return {"processes": procs}, aux


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process (as `taskset -a -p`); threads it starts later inherit the mask."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def parse_cpus(spec: str) -> set[int]:
    """`0`, `0,1`, `0-3` (as taskset -c)."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(part))
    if not out:
        raise ValueError(f"no CPUs in {spec!r}")
    return out


METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str, names: Iterable[str]) -> dict[str, float]:
    """Sum of every sample of each named metric in Prometheus text format."""
    wanted = set(names)
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC.match(line)
        if m and m.group(1) in wanted:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                continue
    return out


SERVER_METRICS = ("transcription_backlog", "media_audio_peers", "media_frames_dropped", "socketio_connections",
                  "transcription_compute_per_audio", "gc_cpu_seconds_total")
#: what holds the server's event loop (signalling/eventloop.py): histograms, and the largest value of their last 10 s
LOOP_HISTOGRAMS = ("gc_pause_seconds", "event_loop_lag_seconds")
LOOP_RECENT_MAX = {"gc_pause_recent_max_seconds": "gc_pause_seconds", "event_loop_lag_recent_max_seconds":
                   "event_loop_lag_seconds"}
LABEL = re.compile(r'(\w+)="([^"]*)"')


def parse_histograms(text: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The named histograms, summed over their labels other than `generation`: `{key: {"buckets": {le: cumulative
    count}, "sum": s, "count": n}}`, where key is the name, or `name:generation` for a histogram with that label."""
    wanted = set(names)
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC.match(line)
        if not m:
            continue
        name, labels, raw = m.group(1), dict(LABEL.findall(m.group(2) or "")), m.group(3)
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in wanted:
                base = name[: -len(suffix)]
                break
        else:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        key = f"{base}:{labels['generation']}" if "generation" in labels else base
        h = out.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        if suffix == "_bucket":
            le = math.inf if labels.get("le") == "+Inf" else float(labels.get("le", "nan"))
            h["buckets"][le] = h["buckets"].get(le, 0.0) + value
        else:
            h[suffix[1:]] += value
    return out


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    """Samples of one metric summed by the value of one of its labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC.match(line) if line and not line.startswith("#") else None
        if not m or m.group(1) != name:
            continue
        key = dict(LABEL.findall(m.group(2) or "")).get(label, "")
        with contextlib.suppress(ValueError):
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def recent_max(text: str) -> dict[str, float]:
    """The servers' recent-max gauges, largest over labels: `{histogram key (as parse_histograms): seconds}`."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC.match(line) if line and not line.startswith("#") else None
        if not m or m.group(1) not in LOOP_RECENT_MAX:
            continue
        labels = dict(LABEL.findall(m.group(2) or ""))
        base = LOOP_RECENT_MAX[m.group(1)]
        key = f"{base}:{labels['generation']}" if "generation" in labels else base
        with contextlib.suppress(ValueError):
            out[key] = max(out.get(key, 0.0), float(m.group(3)))
    return out


def histogram_delta(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Histogram b minus histogram a (a None: b itself), bucket by bucket."""
    if b is None:
        return None
    if a is None:
        return b
    return {"buckets": {le: n - a["buckets"].get(le, 0.0) for le, n in b["buckets"].items()},
            "sum": b["sum"] - a["sum"], "count": b["count"] - a["count"]}


def histogram_quantile(h: dict[str, Any] | None, q: float) -> float | None:
    """The q-quantile (0..1) of a histogram of cumulative buckets, interpolated inside its bucket (as Prometheus's
    `histogram_quantile`); the highest finite bound when it falls in +Inf; None when empty."""
    if not h or h["count"] <= 0:
        return None
    rank = q * h["count"]
    lower, below = 0.0, 0.0
    bounds = sorted(h["buckets"])
    for le in bounds:
        n = h["buckets"][le]
        if n >= rank:
            if math.isinf(le):
                return lower
            inside = n - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = (le if not math.isinf(le) else lower), n
    return lower


def histogram_max(h: dict[str, Any] | None, recent: Iterable[float] = ()) -> float | None:
    """The largest value in histogram `h` (a window's delta): the largest of the recent-max gauge readings taken in
    that window when it lies in the highest bucket holding anything (exact), else that bucket's upper bound (the
    gauge then still showed something from before the window). None when the histogram is empty."""
    if not h or h["count"] <= 0:
        return None
    lower, top_lower, top = 0.0, 0.0, 0.0
    previous = 0.0
    for le in sorted(h["buckets"]):
        n = h["buckets"][le]
        if n > previous:
            top_lower, top = lower, le
        previous = n
        lower = le
    seen = max(recent, default=0.0)
    if top_lower < seen <= top:
        return seen
    bound = top_lower if math.isinf(top) else top
    return min(bound, h["sum"]) if h["sum"] > 0 else bound   # never more than all of them together


async def scrape(http: Any, urls: list[str], token: str = "") -> dict[str, Any] | None:
    """The server metrics summed over every process (None if one could not be read); the event-loop histograms
    summed under `histograms` and the recent-max gauges (largest over processes) under `recent_max`."""
    import aiohttp

    total: dict[str, Any] = {}
    histograms: dict[str, dict[str, Any]] = {}
    recent: dict[str, float] = {}
    gc_cpu: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for url in urls:
        try:
            async with http.get(f"{url}/metrics", headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text()
        except Exception:  # noqa: BLE001 - a missed scrape is a missing sample
            return None
        for k, v in parse_metrics(text, SERVER_METRICS).items():
            if k == "transcription_compute_per_audio":
                total[k] = max(total.get(k, 0.0), v)
            else:
                total[k] = total.get(k, 0.0) + v
        for key, h in parse_histograms(text, LOOP_HISTOGRAMS).items():
            into = histograms.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
            for le, n in h["buckets"].items():
                into["buckets"][le] = into["buckets"].get(le, 0.0) + n
            into["sum"] += h["sum"]
            into["count"] += h["count"]
        for key, v in recent_max(text).items():
            recent[key] = max(recent.get(key, 0.0), v)
        for gen, v in by_label(text, "gc_cpu_seconds_total", "generation").items():
            gc_cpu[gen] = gc_cpu.get(gen, 0.0) + v
    total["histograms"] = histograms
    total["recent_max"] = recent
    total["gc_cpu"] = gc_cpu
    return total


def loop_figures(first: dict[str, Any] | None, last: dict[str, Any] | None,
                 readings: Iterable[dict[str, float]] = ()) -> dict[str, Any]:
    """What held the servers' event loops over a window, from the scrapes at its start (`first`) and end (`last`)
    and the recent-max gauges read in between (`readings`, each a scrape's `recent_max`): per generation the
    collections, their total and longest pause; the CPU time the collections took; the event-loop lag p99 and max
    (all processes together; ms)."""
    out: dict[str, Any] = {"gc_pause_max_ms": None, "gc_pause_total_ms": None, "gc_by_generation": None,
                           "gc_cpu_ms": None, "loop_lag_p99_ms": None, "loop_lag_max_ms": None}
    if not last or not last.get("histograms"):
        return out
    if "gc_cpu_seconds_total" in last:
        out["gc_cpu_ms"] = round(1000 * max(0.0, last["gc_cpu_seconds_total"]
                                            - (first or {}).get("gc_cpu_seconds_total", 0.0)), 1)
    readings = list(readings)
    a, b = (first or {}).get("histograms", {}), last["histograms"]

    def ms(seconds: float | None, digits: int = 1) -> float | None:
        return None if seconds is None else round(1000 * seconds, digits)

    gens: dict[str, Any] = {}
    cpu_a, cpu_b = (first or {}).get("gc_cpu", {}), last.get("gc_cpu", {})
    for key in sorted(k for k in b if k.startswith("gc_pause_seconds:")):
        d = histogram_delta(a.get(key), b[key])
        assert d is not None
        top = histogram_max(d, (r.get(key, 0.0) for r in readings))
        gen = key.split(":", 1)[1]
        gens[gen] = {"count": int(round(d["count"])), "total_ms": ms(max(0.0, d["sum"])), "max_ms": ms(top),
                     "cpu_ms": ms(max(0.0, cpu_b[gen] - cpu_a.get(gen, 0.0))) if gen in cpu_b else None}
    if gens:
        out["gc_by_generation"] = gens
        out["gc_pause_total_ms"] = round(sum(g["total_ms"] or 0.0 for g in gens.values()), 1)
        out["gc_pause_max_ms"] = max((g["max_ms"] for g in gens.values() if g["max_ms"] is not None), default=0.0)
    lag = histogram_delta(a.get("event_loop_lag_seconds"), b.get("event_loop_lag_seconds"))
    p99 = histogram_quantile(lag, 0.99)
    top = histogram_max(lag, (r.get("event_loop_lag_seconds", 0.0) for r in readings))
    if p99 is not None and top is not None:
        p99 = min(p99, top)    # interpolation inside the top bucket must not pass the largest value seen
    out["loop_lag_p99_ms"], out["loop_lag_max_ms"] = ms(p99), ms(top)
    return out
