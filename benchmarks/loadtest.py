"""Load test: simulated people drive a running deployment, step by step, until a bound or a broken service level.

    python -m benchmarks.loadtest [--mode signalling|media|transcription] [--steps 2,4,8 | --hold N --duration S]
                                  [--start-servers N [--redis-url URL] [--database-url URL] | --url URL ...]
                                  [--server-cpus 0 --generator-cpus 1] [--json PATH] [--chart PATH] [--quick]
    (also installed as `therapy-loadtest`)

The deployment: `--start-servers N` starts N server processes itself (`benchmarks._cluster.Cluster`: a fresh
PostgreSQL database, or SQLite for one process; Redis when N > 1), with the loopback settings WebRTC needs here
(`THERAPY_MEDIA_HOST_ADDRESSES=127.0.0.1`, `THERAPY_ICE_LOOPBACK_ONLY=true`) and the per-client request limit raised
(`THERAPY_REQUESTS_PER_CLIENT`). Or `--url URL` (repeat, or comma-separate, for several processes) drives a running
one; accounts are then written straight into its database with `--database-url` and `--secret-key` (the servers'
THERAPY_SECRET_KEY). (Over REST, clients could register, but therapists cannot be approved: an admin approves only
a verified e-mail address, and the verification link goes to the applicant's mailbox.)
Accounts are written with one precomputed argon2id hash and bearer tokens issued with the application's own
`issue_auth_token` (`benchmarks.pool_race.create_accounts`); therapists start unavailable.

The people (`benchmarks._loadworker`, one asyncio loop per OS process, `--calls-per-worker` calls each): every call
is set up as the browsers do it (request, race of `--racers` dashboards, offer, accept, join, WebRTC offer/answer
through `call.signal`), then, until the end: `session.ping` every `--ping-interval` s on every connection,
`call.chat` from each member every `--chat-interval` s, `call.notes.save` every `--notes-interval` s, and in the media
modes each member's audio-only WebRTC link to the server (aiortc) carrying a conversation at real-time pace: one
member says a recording from `--speech-dir` (default ../shared/speech), a pause of `--pause` s, then the other.
Peer-to-peer media between the members never touches the server; `--p2p` adds it (real aiortc connections).

Modes: `signalling` (no audio, calls without recording consent); `media` (recording consent, audio to the server,
transcription out of the way: started servers get `THERAPY_TRANSCRIPTION_BACKEND=redis` with no transcription
worker and a tiny stream bound, so utterances are cut by the VAD and recorded but never decoded by Whisper; without
Redis the server transcribes and the run says so); `transcription` (live transcription as configured, by default
tiny.en int8 on the server's CPU).

A step: ramp to the step's number of concurrent calls (new calls at `--setup-rate` per second), settle `--settle` s,
then measure for `--step-seconds` (the window). Per step: request->accept (pool.request -> the offer reaches the
client) and accept->connected (pool.respond -> both joined, the WebRTC description answered, and in the media modes
both server links connected) p50/p95/p99, the signalling round trip (session.ping), the relay of chat messages to
the other member, audio packets sent vs lost at the server (its RTCP receiver reports), transcript latency (the frame
holding an utterance's last speech sample sent -> its last segment at the therapist; utterances ending in the window
shifted back by the latency limit, so each has had that long; none yet counts as the time waited so far) and the
transcription backlog (the server's /metrics), errors by kind, and each server process's CPU seconds and memory
(/proc). The generator watches itself: a step where a worker's event loop lagged (50 ms ticker, p99 over
`--max-loop-lag-ms`) or more than `--max-late-frames` of the audio frames went out late is INVALID: not counted,
and the run stops there, since the tool cannot tell what the server would have done. (If the generator lagged only
during the ramp, the step counts but its set-up latencies are not judged.)

Bounds: `--steps` run out, `--max-calls`, `--duration` (the measurement stops there), the first valid step that
breaks a service level (`--slo-*`), or the first invalid step. The result names the bound that stopped it, the last
step that held, and capacity: with the server pinned to cores (`--server-cpus`, as taskset does), the largest number
of calls the server held within its service levels at a valid step, per core, when a step then broke them; when the
generator (or a bound) stopped the run first, the per-call cost instead, never an extrapolation.

Output: progress on stderr, the table on stdout, then, as the last line of stdout, one JSON document with every
figure (also written to `--json PATH`); `--chart PATH` draws the figures against concurrent calls (PNG). `--plot
A.json B.json ... --chart PATH` draws several runs' results in one chart without running anything. Exit 0 when the run
completed and its bookkeeping adds up (every call it started ended, on the server too), whatever the figures; 1
otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks._cluster import BENCH_DEPOSIT_PENCE, ROOT, Cluster, free_port
from benchmarks._loadclients import LoadClients
from benchmarks._loadhost import ProcessWatch, Watched, loop_figures, parse_cpus, pin, scrape
from benchmarks._loadreport import (
    Limits,
    chart,
    conclude,
    progress_line,
    summarise_step,
    table,
)

DEFAULT_POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODES = ("signalling", "media", "transcription")
DEFAULT_STEPS = {"signalling": "250,500,750,1000,1250,1500", "media": "2,4,6,8,10,12,16,20,24,28,32",
                 "transcription": "1,2,3,4,5,6,8,10,12"}
CALLS_PER_WORKER = {"signalling": 250, "media": 7, "transcription": 7}    # <= ~15 aiortc senders per process
SETUP_RATE = {"signalling": 5.0, "media": 4.0, "transcription": 4.0}
TARGETS = {"signalling_connections": 2000, "signalling_rtt_p99_ms": 50.0, "media_cpu_pct_per_call": 5.0,
           "media_calls_per_core": 20, "transcription_calls": 4, "transcription_latency_p95_s": 3.0}
STEP_SECONDS = {"signalling": 30.0, "media": 30.0, "transcription": 60.0}   # enough utterances for a p95
SCRAPE_EVERY_S = 2.0


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- worker processes


class LoadWorkers(LoadClients):
    """`benchmarks._loadclients.LoadClients` (the JSON-lines process pool), running `benchmarks._loadworker`, each
    worker in a session of its own."""

    async def start(self) -> "LoadWorkers":
        for n in range(self.processes):
            log_file: Any = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log_file = open(self.log_dir / f"worker-{n}.log", "wb")  # noqa: SIM115 - the child keeps it
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "benchmarks._loadworker", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=log_file, limit=64 * 1024 * 1024,
                    start_new_session=True, preexec_fn=_child_setup(None),   # see OwnSessionCluster
                )
            finally:
                if log_file is not None:
                    log_file.close()
            self._procs.append(proc)
            self._pending.append({})
            self._readers.append(asyncio.get_running_loop().create_task(self._read(n, proc)))
        return self


# ---------------------------------------------------------------- the deployment


def _child_setup(cpus: set[int] | None) -> Any:
    """For a child in a session of its own: pinned to `cpus` (if any), and sent SIGTERM if this process dies
    without stopping it (the parent's process group is no longer its own, so a kill of that group misses it)."""

    def setup() -> None:
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


@dataclass
class OwnSessionCluster(Cluster):
    """`benchmarks._cluster.Cluster` whose server processes start in sessions of their own, pinned to `cpus` from
    birth (as `taskset -c` does). With the kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`,
    on by default) CPU time is shared fairly between sessions before processes: a server in the load test's own
    session would share one portion with the load generator and be starved by every other session on a busy
    machine. A deployment's service runs in a session of its own too."""

    cpus: set[int] | None = None

    async def start(self) -> "OwnSessionCluster":
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.migrate()
        cpus = self.cpus or set(range(os.cpu_count() or 1))   # not the generator's CPUs this process may have
        for n in range(self.processes):
            port = free_port()
            log_file = open(self.workdir / f"server-{n}.log", "wb")  # noqa: SIM115 - closed with the process
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "signalling", "--host", "127.0.0.1", "--port", str(port), cwd=ROOT,
                env=self.env(port), stdout=log_file, stderr=log_file, start_new_session=True,
                preexec_fn=_child_setup(cpus),
            )
            log_file.close()
            self._procs.append(proc)
            self.urls.append(f"http://127.0.0.1:{port}")
        await asyncio.gather(*(self._wait_healthy(url, proc) for url, proc in zip(self.urls, self._procs)))
        return self


@dataclass
class Deployment:
    urls: list[str]
    watched: list[Watched]
    database_url: str | None
    secret_key: str | None
    database: str                       # sqlite | postgresql | external
    redis: bool
    started: bool
    media_transcription: str            # how the server treats audio in media mode
    aux: list[str] = field(default_factory=list)
    db_name: str | None = None
    cluster: Cluster | None = None
    backing: Any = None

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
        if self.backing is not None:
            await self.backing.close()


async def start_deployment(args: argparse.Namespace, workdir: Path, server_cpus: set[int] | None) -> Deployment:
    from benchmarks.pool_race import open_backing
    from core.crypto import Keyring

    processes = args.start_servers
    redis_url = args.redis_url
    media_transcription = "no audio" if args.mode == "signalling" else "on"
    if args.mode == "media" and not redis_url and args.media_transcription == "parked":
        redis_url = await _redis_if_up(DEFAULT_REDIS)
    backing = await open_backing(argparse.Namespace(processes=processes, redis_url=redis_url or "",
                                                    database_url=args.database_url, quick=args.quick), workdir)
    env = {
        "THERAPY_MEDIA_HOST_ADDRESSES": "127.0.0.1", "THERAPY_ICE_LOOPBACK_ONLY": "true",
        "THERAPY_REQUESTS_PER_CLIENT": "1000000", "THERAPY_REQUESTS_WINDOW_S": "60",
    }
    if args.mode == "media":
        if args.media_transcription == "parked" and backing.redis_url:
            env.update({"THERAPY_TRANSCRIPTION_BACKEND": "redis", "THERAPY_TRANSCRIPTION_STREAM_MAX": "4"})
            media_transcription = "parked (Redis backend, no transcription worker: VAD and recording run, Whisper does not)"
        elif args.media_transcription == "parked":
            media_transcription = "on (no Redis to park utterances in: the server transcribes)"
            log("media mode: no Redis reachable, so the server transcribes as in transcription mode")
    for item in args.server_env:
        key, _, value = item.partition("=")
        env[key] = value
    cluster = OwnSessionCluster(processes=processes, database_url=backing.database_url, redis_url=backing.redis_url,
                      redis_prefix=backing.redis_prefix, workdir=workdir / "servers",
                      secret_key=secrets.token_urlsafe(48), encryption_keys=Keyring.generate_spec("load1"),
                      extra_env=env, cpus=server_cpus)
    try:
        await cluster.start()
    except BaseException:
        await cluster.stop()
        await backing.close()
        raise
    aux = ["postgres"] if backing.database == "postgresql" else []
    if backing.redis_url:
        aux.append("redis-server")
    return Deployment(
        urls=cluster.urls, watched=[Watched(f"server{n}", pid, url) for n, (pid, url) in
                                    enumerate(zip(cluster.pids, cluster.urls))],
        database_url=backing.database_url, secret_key=cluster.secret_key, database=backing.database,
        redis=bool(backing.redis_url), started=True, media_transcription=media_transcription, aux=aux,
        db_name=backing.database_url.rsplit("/", 1)[-1] if backing.database == "postgresql" else None,
        cluster=cluster, backing=backing)


async def _redis_if_up(url: str) -> str:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        await asyncio.wait_for(client.ping(), 3)
        return url
    except Exception:  # noqa: BLE001 - no Redis: the caller says what that means
        return ""
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def external_deployment(args: argparse.Namespace) -> Deployment:
    urls = [u.rstrip("/") for spec in args.url for u in spec.split(",") if u.strip()]
    pids = [int(p) for spec in args.server_pids for p in spec.split(",") if p.strip()]
    watched = [Watched(f"server{n}", pid, urls[n] if n < len(urls) else None) for n, pid in enumerate(pids)]
    database_url = args.database_url
    if database_url and database_url.startswith("postgresql://"):
        database_url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    return Deployment(urls=urls, watched=watched, database_url=database_url,
                      secret_key=args.secret_key or os.environ.get("THERAPY_SECRET_KEY"), database="external",
                      redis=False, started=False, media_transcription="as deployed", aux=args.aux)


# ---------------------------------------------------------------- accounts


@dataclass
class Accounts:
    therapists: list[dict[str, Any]]
    clients: list[dict[str, Any]]
    how: str


async def make_accounts(dep: Deployment, therapists: int, clients: int, admin_email: str | None) -> Accounts:
    if dep.database_url and dep.secret_key:
        from sqlalchemy import update

        from accounts.models import TherapistProfile
        from benchmarks.pool_race import create_accounts
        from core.db import Database

        ts, cs = await create_accounts(dep.database_url, dep.secret_key, therapists, clients)
        db = Database(dep.database_url)
        try:   # off the dashboards until they come online, as a therapist who has not started a shift
            async with db.transaction() as session:
                await session.execute(update(TherapistProfile).where(TherapistProfile.user_id.in_([t.id for t in ts]))
                                      .values(available=False))
        finally:
            await db.dispose()
        return Accounts([{"id": a.id, "token": a.token} for a in ts], [{"id": a.id, "token": a.token} for a in cs],
                        "database")
    if dep.database_url:
        raise SystemExit("--database-url against a running deployment needs --secret-key (its THERAPY_SECRET_KEY)")
    return await rest_accounts(dep.urls[0], therapists, clients, admin_email)


async def rest_accounts(url: str, therapists: int, clients: int, admin_email: str | None) -> Accounts:
    """Register clients and therapists over REST; an admin approves the therapists."""
    import aiohttp

    from benchmarks.pool_race import PASSWORD

    if therapists:
        raise SystemExit("therapists cannot be made over REST: an admin approves only an applicant whose e-mail "
                         "address is verified, and the link goes to their mailbox. Give --database-url and "
                         "--secret-key (accounts written straight into the database), or use --start-servers")
    password = os.environ.get("ADMIN_PASSWORD", "")
    if (therapists or clients) and not (admin_email and password):
        raise SystemExit("without --database-url, therapists are approved and clients' wallets credited over REST: "
                         "give --admin-email and ADMIN_PASSWORD in the environment")
    run = secrets.token_hex(3)
    out = Accounts([], [], "rest")
    async with aiohttp.ClientSession() as http:
        async def post(path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.post(f"{url}{path}", json=body, headers=headers) as resp:
                data = await resp.json()
                if resp.status >= 300:
                    raise RuntimeError(f"POST {path}: {resp.status} {data}")
                return data

        admin = (await post("/api/auth/signin", {"email": admin_email, "password": password}))["token"] \
            if admin_email and password else None
        for n in range(clients):
            data = await post("/api/auth/register", {"email": f"load-c{n}-{run}@example.org", "password": PASSWORD,
                                                     "display_name": f"Client {n}", "date_of_birth": "1990-05-17"})
            out.clients.append({"id": data["user"]["id"], "token": data["token"]})
            if admin is not None:  # a deployment that charges calls needs money in the wallet to ask for a session
                async with http.post(f"{url}/api/admin/billing/clients/{data['user']['id']}/credits",
                                     json={"amount_pence": BENCH_DEPOSIT_PENCE, "memo": "load test"},
                                     headers={"Authorization": f"Bearer {admin}", "Idempotency-Key": f"load-{run}-{n}"}
                                     ) as resp:
                    if resp.status >= 300:
                        raise RuntimeError(f"crediting client {n}: {resp.status} {await resp.text()}")
        for n in range(therapists):
            data = await post("/api/auth/apply", {
                "email": f"load-t{n}-{run}@example.org", "password": PASSWORD, "display_name": f"Dr Load {n}",
                "qualifications": "MSc Counselling", "registration_body": "BACP", "registration_number": str(100000 + n),
                "insurance_provider": "Balens", "insurance_expiry": "2031-01-01", "bio": "", "expertise": [],
                "rate_pence_per_minute": 100})
            await post(f"/api/admin/applications/{data['user']['id']}/approve", {}, admin)
            out.therapists.append({"id": data["user"]["id"], "token": data["token"]})
    return out


# ---------------------------------------------------------------- speech


def speech_bank(args: argparse.Namespace, workdir: Path) -> Path:
    """The clips of `--speech-dir`, encoded to Opus once (cached in the temporary folder by content)."""
    from benchmarks._loadaudio import build_bank
    from benchmarks._speech import read_manifest

    speech_dir = Path(args.speech_dir)
    rows = read_manifest(speech_dir)
    h = hashlib.sha256()
    for row in rows:
        st = (speech_dir / row["file"]).stat()
        h.update(f"{row['file']}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(f"quick={args.quick}".encode())
    cached = Path(tempfile.gettempdir()) / f"therapy-loadtest-speech-{h.hexdigest()[:16]}.pkl"
    if cached.exists():
        return cached
    from benchmarks._speech import load_clips

    clips = load_clips(speech_dir, shortest=3 if args.quick else None)
    bank = build_bank([(c.name, c.pcm48, c.speech_end_s) for c in clips])
    tmp = workdir / "speech.pkl"
    bank.save(tmp)
    with contextlib.suppress(OSError):
        shutil.copyfile(tmp, cached)
        return cached
    return tmp


# ---------------------------------------------------------------- the plan


def parse_steps(spec: str) -> list[int]:
    """`2,4,8` or `START:STOP:STEP` (inclusive) or a mix: `1,2,4:20:4`."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            bits = [int(b) for b in part.split(":")]
            start, stop, step = (bits + [1])[:3] if len(bits) >= 2 else (bits[0], bits[0], 1)
            out.extend(range(start, stop + 1, max(1, step)))
        else:
            out.append(int(part))
    if not out or any(n < 1 for n in out) or out != sorted(out):
        raise ValueError(f"steps must be increasing numbers of calls >= 1: {spec!r}")
    return out


def plan(args: argparse.Namespace) -> tuple[list[int], bool]:
    """The numbers of concurrent calls to measure, and whether --max-calls cut the list."""
    if args.hold:
        return [args.hold], False
    steps = parse_steps(args.steps or DEFAULT_STEPS[args.mode])
    if args.max_calls:
        cut = [n for n in steps if n <= args.max_calls]
        clipped = len(cut) < len(steps)
        if clipped and (not cut or cut[-1] < args.max_calls):
            cut.append(args.max_calls)
        return cut, clipped
    return steps, False


# ---------------------------------------------------------------- the run


class Run:
    def __init__(self, args: argparse.Namespace, limits: Limits) -> None:
        self.args, self.limits = args, limits
        self.steps: list[dict[str, Any]] = []
        self.active = 0               # calls handed to the workers
        self.per_worker: list[int] = []
        self.key = 0
        self.status: dict[str, Any] = {}
        self.progress_tty = sys.stderr.isatty() and not args.quiet

    def say(self, line: str) -> None:
        if self.args.quiet:
            return
        if self.progress_tty:
            sys.stderr.write("\r\x1b[K")
        log(line)

    async def ramp(self, load: LoadWorkers, target: int, accounts: Accounts, cursor: dict[str, int]) -> None:
        """Hand out the calls that take the run to `target`, round-robin over the workers, with their accounts."""
        new = target - self.active
        if new <= 0:
            return
        workers = load.processes
        batches: list[dict[str, Any]] = [{"op": "add_calls", "calls": [], "therapists": []} for _ in range(workers)]
        for _ in range(new):
            w = self.active % workers
            client = accounts.clients[cursor["client"]]
            cursor["client"] += 1
            self.key += 1
            batches[w]["calls"].append({"key": f"w{w}c{self.key}", "client": client})
            self.active += 1
        for w, batch in enumerate(batches):
            need = len(batch["calls"])
            spares = 0
            if self.per_worker[w] == 0 and need:   # this worker's share of the idle dashboards
                spares = self.args.dashboards // workers + (1 if w < self.args.dashboards % workers else 0)
            take = need + spares
            batch["therapists"] = accounts.therapists[cursor["therapist"]:cursor["therapist"] + take]
            cursor["therapist"] += take
            self.per_worker[w] += need
        interval = workers / self.args.setup_rate if self.args.setup_rate > 0 else 0.0
        for batch in batches:
            batch["interval"] = interval
        longest = max(len(b["calls"]) for b in batches)
        timeout = longest * interval + 3 * self.args.setup_timeout + 120
        ramping = asyncio.ensure_future(load.each(batches, timeout=timeout))
        while self.progress_tty and not ramping.done():   # the progress bar during the set-ups too
            await asyncio.wait({ramping}, timeout=1.0)
            if not ramping.done():
                with contextlib.suppress(Exception):
                    status = await self.poll(load)
                    sys.stderr.write("\r\x1b[K" + progress_line(0, 0, status.get("active_calls", 0), target, status,
                                                                   what=f"ramp to {target} calls"))
                    sys.stderr.flush()
        replies = await ramping
        failed = sum(r.get("failed", 0) for r in replies)
        if failed:
            self.say(f"  {failed} of {new} new calls failed to set up")

    @staticmethod
    async def poll(load: LoadWorkers) -> dict[str, Any]:
        replies = await load.all({"op": "status"}, timeout=5)
        return {k: sum(r.get(k, 0) for r in replies) for k in ("active_calls", "connections", "in_flight", "errors")}

    async def window(self, load: LoadWorkers, http: Any, dep: Deployment, step_no: int, steps_total: int,
                     seconds: float) -> tuple[float, float, dict[str, Any]]:
        """Measure until `seconds` pass; returns (start, end, metrics samples)."""
        start = time.monotonic()
        end = start + seconds
        metrics: dict[str, list[float]] = {"backlog": [], "peers": [], "dropped": [], "compute_per_audio": []}
        scrapes: list[dict[str, Any]] = []     # for the event-loop figures: histograms at both ends, gauges between

        def keep(m: dict[str, Any]) -> None:
            scrapes.append(m)
            metrics["backlog"].append(m.get("transcription_backlog", 0.0))
            metrics["peers"].append(m.get("media_audio_peers", 0.0))
            metrics["dropped"].append(m.get("media_frames_dropped", 0.0))
            if "transcription_compute_per_audio" in m:
                metrics["compute_per_audio"].append(round(m["transcription_compute_per_audio"], 3))

        next_scrape = start
        while True:
            t = time.monotonic()
            if t >= end:
                break
            if t >= next_scrape:
                next_scrape = t + SCRAPE_EVERY_S
                m = await scrape(http, dep.urls, self.args.metrics_token)
                if m is not None:
                    keep(m)
            if self.progress_tty:
                with contextlib.suppress(Exception):
                    self.status = await self.poll(load)
                line = progress_line(step_no, steps_total, time.monotonic() - start, seconds, self.status)
                if self.progress_tty:
                    sys.stderr.write("\r\x1b[K" + line)
                    sys.stderr.flush()
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
        stop = time.monotonic()
        m = await scrape(http, dep.urls, self.args.metrics_token)   # the end of the window, for the histograms
        if m is not None:
            keep(m)
        dropped = metrics.pop("dropped")
        out: dict[str, Any] = dict(metrics)
        out["dropped_delta"] = int(max(dropped) - min(dropped)) if dropped else None
        # the recent-max gauges of the first scrape look back before the window: not read
        out["loop"] = loop_figures(scrapes[0] if scrapes else None, scrapes[-1] if len(scrapes) > 1 else None,
                                   [m.get("recent_max", {}) for m in scrapes[1:]])
        return start, stop, out


async def run(args: argparse.Namespace) -> int:
    limits = Limits(request_p95_s=args.slo_request_p95, setup_p95_s=args.slo_setup_p95, rtt_p99_ms=args.slo_rtt_p99_ms,
                    transcript_p95_s=args.slo_transcript_p95, frame_loss=args.slo_frame_loss,
                    chat_lost=args.slo_chat_lost, failed_calls=args.slo_failed_calls, errors=args.slo_errors,
                    loop_lag_p99_ms=args.max_loop_lag_ms, late_frames=args.max_late_frames,
                    late_frame_ms=args.late_frame_ms)
    targets, clipped = plan(args)
    args.max_target = max(targets)
    server_cpus = parse_cpus(args.server_cpus) if args.server_cpus else None
    generator_cpus = parse_cpus(args.generator_cpus) if args.generator_cpus else None
    if generator_cpus:
        pin(os.getpid(), generator_cpus)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)

    workdir = Path(tempfile.mkdtemp(prefix="loadtest_"))
    started_wall = datetime.now(timezone.utc)
    t_start = time.monotonic()
    runner = Run(args, limits)
    dep: Deployment | None = None
    load: LoadWorkers | None = None
    stopped_by, stop_detail, error = "steps_done", "", None
    bookkeeping: dict[str, Any] = {}
    affinity: dict[str, Any] = {}
    accounts_how = ""
    workers_n = 0
    try:
        if args.url:
            dep = external_deployment(args)
        else:
            runner.say(f"starting {args.start_servers} server process(es)"
                       + (f" on CPU {args.server_cpus}" if server_cpus else ""))
            dep = await start_deployment(args, workdir, server_cpus)
        if server_cpus:
            for w in dep.watched:
                pin(w.pid, server_cpus)
        calls_per_worker = args.calls_per_worker or (3 if args.p2p else CALLS_PER_WORKER[args.mode])
        workers_n = args.workers or max(1, math.ceil(args.max_target / calls_per_worker))
        workers_n = min(workers_n, args.max_target)
        runner.per_worker = [0] * workers_n
        accounts = await make_accounts(dep, args.max_target + args.dashboards, args.max_target, args.admin_email)
        accounts_how = accounts.how
        bank = str(speech_bank(args, workdir)) if args.mode != "signalling" else ""
        runner.say(f"{dep.urls}: {len(accounts.therapists)} therapists and {len(accounts.clients)} clients "
                   f"({accounts.how}); {workers_n} worker process(es); steps {targets}")
        load = LoadWorkers(workers_n, workdir / "logs")
        await load.start()
        config = {
            "mode": args.mode, "urls": dep.urls, "p2p": args.p2p, "racers": args.racers, "seed": args.seed,
            "ping_interval": args.ping_interval, "chat_interval": args.chat_interval,
            "notes_interval": args.notes_interval, "pause": list(args.pause), "call_seconds": args.call_seconds,
            "setup_timeout": args.setup_timeout, "setup_in_flight": args.setup_in_flight,
            "chat_timeout": args.chat_timeout, "late_frame_s": args.late_frame_ms / 1000, "bank": bank,
        }
        await load.each([{"op": "init", "config": {**config, "index": n}} for n in range(workers_n)], timeout=120)

        affinity = {f"server {w.pid}": _affinity(w.pid) for w in dep.watched}
        affinity.update({f"worker {pid}": _affinity(pid) for pid in load.pids})
        affinity[f"coordinator {os.getpid()}"] = _affinity(os.getpid())
        watch = ProcessWatch(dep.watched, dep.aux, dep.db_name)
        cursor = {"client": 0, "therapist": 0}
        deadline = math.inf       # --duration counts from the first set-up
        t_load: float | None = None
        import aiohttp

        async with aiohttp.ClientSession() as http:
            n = 0
            hold_forever = bool(args.hold)
            while True:
                if n >= len(targets) and not hold_forever:
                    stopped_by = "max_calls" if clipped else "steps_done"
                    break
                target = targets[min(n, len(targets) - 1)]
                n += 1
                if time.monotonic() >= deadline:
                    stopped_by = "duration"
                    break
                ramp_start = time.monotonic()
                if t_load is None:
                    t_load = ramp_start
                    deadline = t_load + args.duration if args.duration else math.inf
                ramp_before = watch.sample()
                await runner.ramp(load, target, accounts, cursor)
                await asyncio.sleep(max(0.0, min(args.settle, deadline - time.monotonic())))
                ramp_s = time.monotonic() - ramp_start
                seconds = min(args.step_seconds, deadline - time.monotonic())
                if seconds < min(1.0, args.step_seconds / 2):
                    stopped_by = "duration"
                    break
                await load.all({"op": "mark"}, timeout=60)
                before = watch.sample()
                ws, we, metrics = await runner.window(load, http, dep, n, len(targets) if not hold_forever else n,
                                                      seconds)
                after = watch.sample()
                replies = await load.all({"op": "collect", "since": ws, "until": we, "ramp_since": ramp_start,
                                          "transcript_grace": args.transcript_grace or limits.transcript_p95_s,
                                          "chat_grace": args.chat_timeout}, timeout=120)
                server, aux = ProcessWatch.delta(before, after)
                ramp_server, _ = ProcessWatch.delta(ramp_before, before)
                server["ramp_cpu_s"] = sum(p["cpu_s"] or 0.0 for p in ramp_server["processes"])
                step = summarise_step(index=n, target=target, mode=args.mode, window_s=we - ws, ramp_s=ramp_s,
                                      workers=replies, server=server, aux=aux, metrics=metrics, limits=limits,
                                      server_cores=len(server_cpus) if server_cpus else None,
                                      previous=runner.steps[-1] if runner.steps else None,
                                      transcribing=not dep.media_transcription.startswith("parked"))
                step["t"] = round(ws - t_load, 2)
                step["loadavg"] = [round(x, 2) for x in os.getloadavg()]
                runner.steps.append(step)
                runner.say(step_line(step))
                if not step["valid"]:
                    stopped_by, stop_detail = "generator", "; ".join(step["invalid_reasons"])
                    break
                if not step["slo"]["held"] and not args.keep_going:
                    stopped_by, stop_detail = "slo", ", ".join(step["slo"]["broken"])
                    break
                if time.monotonic() >= deadline - 0.5:
                    stopped_by = "duration"
                    break
    except asyncio.CancelledError:
        stopped_by, error = "interrupted", "interrupted"
    except Exception as exc:  # noqa: BLE001 - reported in the result, and the exit status
        import traceback

        log(traceback.format_exc())
        stopped_by, error = "error", f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            if load is not None:
                try:
                    replies = await load.all({"op": "stop"}, timeout=max(120.0, 3 * args.setup_timeout + 60))
                    bookkeeping = add_up(replies, runner.steps)
                except Exception as exc:  # noqa: BLE001
                    bookkeeping = {"error": f"{type(exc).__name__}: {exc}", "all_ended": False, "counts_add_up": False}
                await load.stop()
            if dep is not None:
                await dep.close()
    wall_s = time.monotonic() - t_start
    result = {
        "tool": "benchmarks.loadtest", "version": 1, "label": args.label or default_label(args, dep),
        "mode": args.mode, "started_at": started_wall.isoformat(), "wall_s": round(wall_s, 1),
        "stopped_by": stopped_by, "stop_detail": stop_detail, "error": error,
        "plan": {"steps": targets, "hold": args.hold, "duration_s": args.duration, "max_calls": args.max_calls,
                 "step_seconds": args.step_seconds, "settle_s": args.settle},
        "limits": limits.as_dict(),
        "config": {k: v for k, v in vars(args).items() if k not in ("secret_key",)},
        "deployment": {
            "urls": dep.urls if dep else [], "started": bool(dep and dep.started),
            "processes": len(dep.urls) if dep else 0, "database": dep.database if dep else None,
            "redis": bool(dep and dep.redis), "server_pids": [w.pid for w in dep.watched] if dep else [],
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "generator_cpus": sorted(generator_cpus) if generator_cpus else None,
            "media_transcription": dep.media_transcription if dep else None, "accounts": accounts_how,
            "aux": dep.aux if dep else [], "affinity": affinity,
        },
        "generator": {"workers": workers_n, "calls_per_worker": args.calls_per_worker or (
            3 if args.p2p else CALLS_PER_WORKER[args.mode])},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "steps": runner.steps,
        "bookkeeping": bookkeeping,
    }
    result["conclusion"] = conclude(runner.steps, stopped_by, args.mode,
                                    len(server_cpus) if server_cpus else None)
    result["targets"] = judge_targets(result)
    print(table(result))
    print(summary_text(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.chart and runner.steps:
        try:
            chart([result], args.chart)
        except Exception as exc:  # noqa: BLE001 - the figures are in the JSON anyway
            log(f"chart not drawn: {type(exc).__name__}: {exc}")
    print(json.dumps(result, separators=(",", ":")), flush=True)
    ok = error is None or error == "interrupted"
    ok = ok and bool(bookkeeping.get("all_ended")) and bool(bookkeeping.get("counts_add_up"))
    if ok or args.keep:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work folder kept: {workdir}")
    else:
        log(f"logs kept in {workdir}")
    return 0 if ok and error is None else 1


def _affinity(pid: int) -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(pid))
    except OSError:
        return None


def default_label(args: argparse.Namespace, dep: Deployment | None) -> str:
    n = len(dep.urls) if dep else args.start_servers
    return f"{args.mode}, {n} process{'es' if n != 1 else ''}" + (" + Redis" if dep and dep.redis else "")


def step_line(step: dict[str, Any]) -> str:
    verdict = ("INVALID: " + "; ".join(step["invalid_reasons"])) if not step["valid"] else \
        ("held" if step["slo"]["held"] else "BROKE " + ", ".join(step["slo"]["broken"]))
    t = step["transcripts"] or {}
    extra = f", transcript p95 {t['latency_ms']['p95']} ms" if t and t.get("latency_ms", {}).get("p95") else ""
    return (f"step {step['step']}: {step['calls']} calls, {step['connections']} connections, "
            f"set-up p95 {step['accept_to_connected_ms']['p95']} ms, ping p99 {step['ping_rtt_ms']['p99']} ms{extra}, "
            f"server CPU {step['server']['cpu_pct']} %, GC max/total {step['server'].get('gc_pause_max_ms')}/"
            f"{step['server'].get('gc_pause_total_ms')} ms, loop lag p99 {step['server'].get('loop_lag_p99_ms')} ms, "
            f"errors {step['error_count']}: {verdict}")


def add_up(replies: list[dict[str, Any]], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's bookkeeping from the workers' `stop` answers: every call started ended (by our hang-up and on the
    server), and the counts add up."""
    keys = ("calls_started", "calls_connected", "calls_failed", "calls_ended", "calls_set_up_attempted",
            "calls_verified_ended", "calls_verified_open", "calls_verify_errors", "requests", "requests_cancelled",
            "requests_refused", "requests_stranded",
            "chat_sent", "chat_acked", "chat_delivered", "connections_left", "setups_unreported")
    out: dict[str, Any] = {k: sum(int(r.get(k, 0)) for r in replies) for k in keys}
    errors: dict[str, int] = {}
    for r in replies:
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    out["errors_after_last_step"] = errors
    out["chat_lost"] = out["chat_sent"] - out["chat_delivered"]
    reported = sum(s["setups"] for s in steps)
    out["setups_reported_in_steps"] = reported
    out["calls_in_last_step"] = steps[-1]["calls"] if steps else 0
    checks = {
        "every_started_call_ended": out["calls_ended"] == out["calls_started"],
        "server_says_ended": out["calls_verified_ended"] == out["calls_started"] and out["calls_verified_open"] == 0
        and out["calls_verify_errors"] == 0,
        "attempts_are_connected_or_failed": out["calls_set_up_attempted"] == out["calls_connected"] + out["calls_failed"],
        "connected_calls_were_started": out["calls_connected"] <= out["calls_started"] <= out["calls_set_up_attempted"],
        "setups_all_reported": reported + out["setups_unreported"] == out["calls_set_up_attempted"],
        "requests_accounted_for": out["requests"] == out["calls_started"] + out["requests_cancelled"]
        + out["requests_refused"] + out["requests_stranded"],
        "no_connection_left_open": out["connections_left"] == 0,
    }
    out["checks"] = checks
    out["all_ended"] = checks["every_started_call_ended"] and checks["server_says_ended"]
    out["counts_add_up"] = all(checks.values())
    return out


def judge_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets for one server core, judged on valid steps that held."""
    mode, steps = result["mode"], result["steps"]
    broke = next((i for i, s in enumerate(steps) if s["valid"] and not s["slo"]["held"]), len(steps))
    held = [s for s in steps[:broke] if s["valid"] and s["slo"]["held"]]   # as the conclusion counts them
    cores = len(result["deployment"]["server_cpus"] or []) or None
    out: dict[str, Any] = {"server_cores": cores}
    if mode == "signalling":
        ok = [s for s in held if (s["ping_rtt_ms"]["p99"] or math.inf) <= TARGETS["signalling_rtt_p99_ms"]]
        best = max((s["connections"] for s in ok), default=0)
        out.update({"target": f">= {TARGETS['signalling_connections']} connections with round trip p99 <= "
                              f"{TARGETS['signalling_rtt_p99_ms']:g} ms", "connections_held": best,
                    "met": best >= TARGETS["signalling_connections"] if cores == 1 else None})
    elif mode == "media":
        costs = [s["server"]["cpu_pct_per_call"] for s in held if s["server"]["cpu_pct_per_call"] is not None]
        cost = costs[-1] if costs else None
        out.update({"target": f"<= {TARGETS['media_cpu_pct_per_call']:g} % of a core per call "
                              f"(>= {TARGETS['media_calls_per_core']} calls per core)",
                    "cpu_pct_per_call_at_largest_step": cost,
                    "met": None if cost is None else cost <= TARGETS["media_cpu_pct_per_call"]})
    else:
        best = max((s["calls"] for s in held), default=0)
        out.update({"target": f">= {TARGETS['transcription_calls']} calls with transcript latency p95 <= "
                              f"{TARGETS['transcription_latency_p95_s']:g} s", "calls_held": best,
                    "met": best >= TARGETS["transcription_calls"] if cores == 1 else None})
    if cores != 1:
        out["note"] = "targets are per server core: pin the server with --server-cpus to judge them"
    return out


def summary_text(result: dict[str, Any]) -> str:
    c, b = result["conclusion"], result["bookkeeping"]
    lines = ["", f"stopped by: {result['stopped_by']}" + (f" ({result['stop_detail']})" if result["stop_detail"] else ""),
             f"last step that held: {c['last_held_step']}; {c['statement']}"]
    if c.get("calls_per_core") is not None:
        lines.append(f"capacity: {c['calls_per_core']} calls per server core")
    t = result["targets"]
    lines.append(f"target: {t['target']}: " + {True: "MET", False: "NOT MET", None: "not judged"}[t.get("met")]
                 + (f" ({t['note']})" if t.get("note") else ""))
    if result["deployment"].get("media_transcription") and result["mode"] == "media":
        lines.append(f"media mode, server transcription: {result['deployment']['media_transcription']}")
    if b:
        lines.append(f"bookkeeping: {b.get('calls_started', 0)} calls started, {b.get('calls_ended', 0)} ended "
                     f"({b.get('calls_verified_ended', 0)} confirmed by the server), {b.get('calls_failed', 0)} "
                     f"set-ups failed; counts add up: {b.get('counts_add_up')}")
    if result["error"]:
        lines.append(f"ERROR: {result['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line




class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, except where there is none to show or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], "", argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action) or text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from benchmarks._speech import DEFAULT_SPEECH_DIR

    p = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__.split("\n\n")[0],
                                formatter_class=_Help)
    g = p.add_argument_group("what to simulate")
    g.add_argument("--mode", choices=MODES, default=None, help="signalling only, media, or media with live "
                   "transcription (default media; signalling with --quick unless given)")
    g.add_argument("--p2p", action="store_true", help="also connect the members peer to peer (media modes)")
    g.add_argument("--racers", type=int, default=2, help="therapists racing for each request (when that many are "
                   "idle in the worker)")
    g.add_argument("--dashboards", type=int, default=20, help="therapists online and available beyond those in "
                   "calls: they receive every request card and race for it")
    g.add_argument("--setup-rate", type=float, default=None, help="new calls per second while ramping "
                   "(default: 5 signalling, 4 media)")
    g.add_argument("--setup-in-flight", type=int, default=32, help="set-ups in progress at once per worker")
    g.add_argument("--setup-timeout", type=float, default=20.0, help="seconds for each wait of a set-up")
    g.add_argument("--ping-interval", type=float, default=5.0, help="session.ping per connection, seconds (0: off)")
    g.add_argument("--chat-interval", type=float, default=30.0, help="chat message per member, seconds (0: off)")
    g.add_argument("--chat-timeout", type=float, default=5.0, help="a chat message not at the other member after "
                   "this many seconds is lost")
    g.add_argument("--notes-interval", type=float, default=30.0, help="notes saved per therapist, seconds (0: off)")
    g.add_argument("--pause", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"),
                   help="silence between two turns of the conversation, seconds")
    g.add_argument("--call-seconds", type=float, default=0.0, help="hang up each call after this long (+-20 %%) and "
                   "start a new one in its place (0: calls last the whole run)")
    g.add_argument("--speech-dir", default=str(DEFAULT_SPEECH_DIR), help="recordings and manifest.tsv")
    g.add_argument("--seed", type=int, default=1)
    g = p.add_argument_group("steps and bounds")
    g.add_argument("--steps", default=None, help="concurrent calls per step: 2,4,8 or START:STOP:STEP "
                   f"(defaults: {DEFAULT_STEPS})")
    g.add_argument("--hold", type=int, default=0, help="hold this many calls (measured in windows of "
                   "--step-seconds) until --duration")
    g.add_argument("--duration", type=float, default=0.0, help="stop measuring after this many seconds (0: none)")
    g.add_argument("--max-calls", type=int, default=0, help="never more concurrent calls than this (0: none)")
    g.add_argument("--step-seconds", type=float, default=None, help="measurement window of each step "
                   f"(default {STEP_SECONDS})")
    g.add_argument("--settle", type=float, default=3.0, help="seconds between the end of a ramp and its window")
    g.add_argument("--keep-going", action="store_true", help="do not stop at a broken service level")
    g = p.add_argument_group("service levels (a step holds when every one that applies is met)")
    g.add_argument("--slo-request-p95", type=float, default=2.0, help="request -> offer p95, seconds")
    g.add_argument("--slo-setup-p95", type=float, default=2.0, help="accept -> connected p95, seconds")
    g.add_argument("--slo-rtt-p99-ms", type=float, default=50.0, help="session.ping round trip p99, ms")
    g.add_argument("--slo-transcript-p95", type=float, default=3.0, help="transcript latency p95, seconds")
    g.add_argument("--slo-frame-loss", type=float, default=0.01, help="fraction of audio packets lost")
    g.add_argument("--slo-chat-lost", type=int, default=0, help="chat messages lost")
    g.add_argument("--slo-failed-calls", type=int, default=0, help="failed set-ups")
    g.add_argument("--slo-errors", type=int, default=0, help="errors of any kind")
    g.add_argument("--transcript-grace", type=float, default=0.0, help="how long an utterance may wait for its "
                   "transcript before it is judged (default: the transcript limit)")
    g = p.add_argument_group("the generator's own limits (beyond them a step is invalid)")
    g.add_argument("--max-loop-lag-ms", type=float, default=50.0, help="event-loop lag p99 in any worker")
    g.add_argument("--max-late-frames", type=float, default=0.01, help="fraction of audio frames sent late")
    g.add_argument("--late-frame-ms", type=float, default=50.0, help="a frame this far behind its schedule is late")
    g.add_argument("--workers", type=int, default=0, help="worker processes (default: by --calls-per-worker)")
    g.add_argument("--calls-per-worker", type=int, default=0,
                   help=f"calls per worker process (default {CALLS_PER_WORKER}, 3 with --p2p)")
    g = p.add_argument_group("the deployment")
    g.add_argument("--start-servers", type=int, default=1, help="start this many server processes")
    g.add_argument("--url", action="append", default=[], help="drive a running deployment instead (repeatable)")
    g.add_argument("--server-pids", action="append", default=[], help="PIDs of a running deployment's processes, "
                   "in --url order (for CPU and memory)")
    g.add_argument("--aux", action="append", default=[], help="process names whose CPU to report too "
                   "(e.g. postgres, redis-server)")
    g.add_argument("--database-url", default=None, help="PostgreSQL server to create a fresh database on (default "
                   f"{DEFAULT_POSTGRES}; SQLite with --quick), or 'sqlite' (one process); with --url: the deployment's "
                   "own database, for the accounts")
    g.add_argument("--redis-url", default=None, help=f"Redis (default: {DEFAULT_REDIS} with more than one process)")
    g.add_argument("--secret-key", default=None, help="the deployment's THERAPY_SECRET_KEY (with --url and "
                   "--database-url)")
    g.add_argument("--admin-email", default=None, help="an admin who approves therapists over REST (ADMIN_PASSWORD)")
    g.add_argument("--metrics-token", default=os.environ.get("THERAPY_METRICS_TOKEN", ""))
    g.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra settings for started servers")
    g.add_argument("--media-transcription", choices=("parked", "on"), default="parked",
                   help="media mode with started servers: park utterances unread in Redis, or transcribe")
    g.add_argument("--server-cpus", default="", help="pin the server processes to these CPUs (as taskset -c)")
    g.add_argument("--generator-cpus", default="", help="pin this process and its workers to these CPUs")
    g = p.add_argument_group("output")
    g.add_argument("--json", default="", help="write the result here too")
    g.add_argument("--chart", default="", help="draw the figures against concurrent calls (PNG)")
    g.add_argument("--plot", nargs="+", default=[], metavar="RESULT.json",
                   help="draw these results in one chart (--chart) and exit")
    g.add_argument("--label", default="", help="name of this run in charts")
    g.add_argument("--quiet", action="store_true", help="no progress on stderr")
    g.add_argument("--keep", action="store_true", help="keep the work folder (server and worker logs)")
    g.add_argument("--quick", action="store_true", help="a few calls for a few seconds (the test suite)")
    args = p.parse_args(argv)
    if args.plot:
        if not args.chart:
            p.error("--plot needs --chart")
        return args
    if args.mode is None:
        args.mode = "signalling" if args.quick else "media"
    if args.step_seconds is None:
        args.step_seconds = STEP_SECONDS[args.mode]
    if args.quick:
        if not args.hold:
            args.steps = args.steps or "1,2"
        args.step_seconds = min(args.step_seconds, 3.0)
        args.settle = min(args.settle, 0.5)
        args.ping_interval = min(args.ping_interval, 1.0)
        args.chat_interval = min(args.chat_interval, 1.0)
        args.notes_interval = min(args.notes_interval, 1.5)
        args.chat_timeout = min(args.chat_timeout, 2.0)
        args.workers = args.workers or 1
        if args.database_url is None and not args.url:
            args.database_url = "sqlite"
    if args.database_url is None and not args.url:
        args.database_url = DEFAULT_POSTGRES
    if args.setup_rate is None:
        args.setup_rate = SETUP_RATE[args.mode]
    if args.redis_url is None:
        args.redis_url = DEFAULT_REDIS if args.start_servers > 1 and not args.url else ""
    if args.p2p and args.mode == "signalling":
        p.error("--p2p needs a media mode")
    if args.hold and not args.duration:
        p.error("--hold needs --duration")
    if args.hold and args.steps:
        p.error("--hold and --steps are exclusive")
    if args.racers < 1 or args.start_servers < 1 or args.step_seconds <= 0 or args.dashboards < 0:
        p.error("--racers, --start-servers and --step-seconds must be positive")
    if args.start_servers > 1 and not args.redis_url and not args.url:
        p.error("several server processes need Redis (--redis-url)")
    if args.url and args.server_cpus:
        log("note: --server-cpus pins the given --server-pids of a running deployment")
    try:
        plan(args)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    from core.logging import configure_logging

    args = parse_args(argv)
    configure_logging("warning", json=False, stream=sys.stderr)  # the domain code it calls (accounts, wallets) stays quiet
    if args.plot:
        results = [json.loads(Path(p).read_text()) for p in args.plot]
        chart(results, args.chart)
        log(f"chart written to {args.chart}")
        return 0
    try:
        import uvloop

        return uvloop.run(run(args))
    except ImportError:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
