"""What the load test reads about the machine: CPU time and memory of processes (from /proc), CPU pinning
(`sched_setaffinity`, what `taskset` does), and the server's own /metrics.

CPU time is utime + stime of every thread of the process (/proc/<pid>/stat), so Whisper's decode threads and the
executor threads count; memory is VmRSS (and VmHWM, the peak) from /proc/<pid>/status.
"""

from __future__ import annotations

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
                  "transcription_compute_per_audio")


async def scrape(http: Any, urls: list[str], token: str = "") -> dict[str, float] | None:
    """The server metrics summed over every process (None if one could not be read)."""
    import aiohttp

    total: dict[str, float] = {}
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
    return total
