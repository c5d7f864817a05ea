"""The quick-connect race under load, against a bare Socket.IO floor measured in the same run.

    python -m benchmarks.pool_race [--processes N] [--redis-url URL] [--database-url URL] [--quick]

Starts its own servers on loopback (`benchmarks._cluster.Cluster`: the real server, notifier path on) on a fresh
database (PostgreSQL `bench_<random>` created on the server of `--database-url` and dropped afterwards, or SQLite in a
temporary folder with `--database-url sqlite`), and with Redis when there is more than one process (a key prefix of
its own, deleted afterwards). Then:

1. Accounts: `dashboards` approved, available therapists with a phone number (so every request queues real SMS alerts
   through the outbox) and enough clients for `requests` (each client may ask 5 times in 10 minutes). They are written
   straight into the database with one precomputed argon2id hash and bearer tokens issued with the application's own
   `issue_auth_token` (the servers' secret key is ours); one REST sign-in proves the accounts are real. Registering
   over REST costs one argon2id hash (~0.13 s of CPU) per account: about a minute for 550 accounts on 2 cores.
2. Client processes (`benchmarks._loadclients`): the dashboards are spread over several OS processes (one process
   cannot receive a 500-socket broadcast fast enough to measure a server): one per 250 dashboards by default, as
   on 2 cores 2 x 250 measured better than 5 x 100 for the floor and the application alike (every extra process
   takes CPU from the servers). The racers are the first `racers` dashboards, spread evenly over the client
   processes and the server processes.
3. The floor (`benchmarks._floor`: one `echo` event, one `broadcast` event, no application logic), started as the
   same number of processes (with `AsyncRedisManager` when more than one). The same client processes hold a second
   set of dashboards connected to it, with the same racers and payload shapes. Per floor round: a broadcast of a
   request-card-sized payload to every dashboard, then, once every dashboard has it, every racer emits `echo` at once.
4. The application, per round: a client emits `pool.request`; every dashboard records `pool.request_added`; once
   every dashboard has it, every racer emits `pool.accept` at once; the client is offered the winner
   (`pool.request_updated`) and then withdraws the request (`pool.cancel`), which frees the winner for the next round.
5. Floor and application rounds alternate (after `--warmup` unmeasured pairs), so both meet the same machine at the
   same moments: this machine is shared, and a p99 is made of a few slow rounds.

Timing: every time is `time.perf_counter()`, which on Linux is CLOCK_MONOTONIC, one clock shared by every process of
the machine. Fan-out = (time a dashboard's handler got the event, in its client process) - (time the client, or
the floor's broadcaster, emitted `pool.request` / `broadcast`, in the coordinator). Ack latency = ack received - emit,
both in the racer's own process.

`claims_per_s` is rounds (request, race, cancel; one at a time) per second of their own duration: the pace of this
sequential scenario, not the server's capacity. `--profile DIR` samples every server process with py-spy during the
measured rounds (raw collapsed stacks).

The last line of output is one JSON object with the figures. The run exits 1 if any round had other than one winner,
if a dashboard missed a request, if a loser got a code other than `taken`, or if the database (pool_offers) or the
offer the client was shown disagrees with the acks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks._cluster import BENCH_DEPOSIT_PENCE, Cluster
from benchmarks._floor import FloorCluster
from benchmarks._loadclients import LoadClients

DEFAULT_POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "bench horse battery staple"
REASON = "I have been struggling with anxiety this week and would like to talk to someone today."
REQUESTS_PER_CLIENT = 5          # the server's default requests_per_client (per 10 minutes)
MIN_ROUND_S = 0.06               # a racer sends one event a round: stay under the 20 events/s per-socket throttle
WAIT_S = 20.0                    # the bound on every wait of a round
#: On 2 cores, 2 client processes x 250 dashboards measured better than 5 x 100, for the floor and the application
#: alike: every extra process competes with the servers for the same two cores (see the module docstring).
DASHBOARDS_PER_PROCESS = 250
CONNECTS_PER_SERVER = 10         # connection attempts in flight per server process while the dashboards connect


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


# ---------------------------------------------------------------- database and Redis of the run


@dataclass
class Backing:
    database_url: str
    database: str
    redis_url: str
    redis_prefix: str
    workdir: Path
    _drop: str | None = None
    _admin_url: str | None = None

    async def close(self) -> None:
        if self._drop and self._admin_url:
            import asyncpg

            try:
                conn = await asyncpg.connect(self._admin_url, timeout=10)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{self._drop}" WITH (FORCE)')
                finally:
                    await conn.close()
            except Exception as exc:  # noqa: BLE001 - reported, never hides the run's own outcome
                log(f"could not drop database {self._drop}: {exc}")
        if self.redis_url:
            import redis.asyncio as aioredis

            client = aioredis.from_url(self.redis_url)
            try:
                async for key in client.scan_iter(f"{self.redis_prefix}:*", count=1000):
                    await client.delete(key)
            except Exception as exc:  # noqa: BLE001
                log(f"could not delete Redis keys {self.redis_prefix}:*: {exc}")
            finally:
                await client.aclose()


async def open_backing(args: argparse.Namespace, workdir: Path) -> Backing:
    prefix = f"bench:{uuid.uuid4().hex[:12]}"
    redis_url = args.redis_url or ""
    if redis_url:
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_url)
        try:
            await asyncio.wait_for(client.ping(), 5)
        finally:
            await client.aclose()
    url = args.database_url
    if url == "sqlite" or url.startswith("sqlite"):
        if args.processes > 1:
            raise SystemExit("several server processes need a shared database: give a PostgreSQL --database-url")
        return Backing(f"sqlite+aiosqlite:///{workdir / 'bench.db'}", "sqlite", redis_url, prefix, workdir)
    import asyncpg

    admin_url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(admin_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        if args.processes == 1 and args.quick:
            log(f"PostgreSQL at {admin_url} is not reachable ({exc}); --quick falls back to SQLite")
            return Backing(f"sqlite+aiosqlite:///{workdir / 'bench.db'}", "sqlite", redis_url, prefix, workdir)
        raise
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return Backing(f"{base}/{name}", "postgresql", redis_url, prefix, workdir, _drop=name, _admin_url=admin_url)


# ---------------------------------------------------------------- accounts


@dataclass
class Account:
    id: int
    email: str
    token: str


async def create_accounts(database_url: str, secret_key: str, therapists: int, clients: int,
                          deposit_pence: int = BENCH_DEPOSIT_PENCE) -> tuple[list[Account], list[Account]]:
    """Approved, available therapists with phones, and adult clients with `deposit_pence` in their wallets (through
    the ledger); one argon2id hash, tokens issued directly."""
    from argon2 import PasswordHasher

    from accounts.models import ApplicationStatus, ClientProfile, Role, TherapistProfile, User
    from accounts.tokens import issue_auth_token
    from billing.wallet import credit_wallet
    from core.clock import SystemClock
    from core.db import Database
    from core.settings import Settings

    password_hash = PasswordHasher().hash(PASSWORD)  # the server's own parameters, so a real sign-in works
    now = datetime.now(timezone.utc)
    run = uuid.uuid4().hex[:6]
    ttl = Settings().token_ttl_s
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            t_users, c_users = [], []
            for n in range(therapists):
                user = User(email=f"t{n}-{run}@example.org", password_hash=password_hash, role=Role.therapist,
                            display_name=f"Dr Bench {n}", email_verified_at=now, created_at=now, updated_at=now)
                user.therapist = TherapistProfile(
                    status=ApplicationStatus.approved, qualifications="MSc Counselling", registration_body="BACP",
                    registration_number=str(100000 + n), insurance_provider="Balens", insurance_expiry=date(2031, 1, 1),
                    bio="", expertise=[], rate_pence_per_minute=100, phone=f"+4477009{n:05d}", available=True,
                    picture_version=0, applied_at=now, reviewed_at=now,
                )
                user.client = None
                session.add(user)
                t_users.append(user)
            for n in range(clients):
                user = User(email=f"c{n}-{run}@example.org", password_hash=password_hash, role=Role.client,
                            display_name=f"Client {n}", email_verified_at=now, created_at=now, updated_at=now)
                user.client = ClientProfile(date_of_birth=date(1990, 5, 17))
                user.therapist = None
                session.add(user)
                c_users.append(user)
            await session.flush()
            out: tuple[list[Account], list[Account]] = ([], [])
            for users, into in ((t_users, out[0]), (c_users, out[1])):
                for user in users:
                    token, _ = issue_auth_token(session, secret_key, user.id, now, ttl)
                    into.append(Account(user.id, user.email, token))
        if deposit_pence:
            for client in out[1]:
                await credit_wallet(db, SystemClock(), client.id, deposit_pence, key=f"bench:{run}:{client.id}")
        return out
    finally:
        await db.dispose()


async def rest_signin(url: str, email: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/auth/signin", json={"email": email, "password": PASSWORD},
                             timeout=aiohttp.ClientTimeout(total=30)) as resp:
            body = await resp.json()
            if resp.status != 200 or not body.get("token"):
                raise RuntimeError(f"sign-in of a benchmark account failed: {resp.status} {body}")


# ---------------------------------------------------------------- the requesting client, in this process


class Requester:
    """A client's socket: asks, withdraws, and remembers which therapist each request was offered to."""

    def __init__(self, url: str, token: str | None) -> None:
        import socketio

        self.url, self.token = url, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.offered: dict[int, int] = {}
        self._changed = asyncio.Event()

        @self.sio.on("pool.request_updated")
        def updated(data: Any = None) -> None:
            req = (data or {}).get("request") or {}
            offer = req.get("offer") or {}
            if req.get("status") == "offered" and offer.get("therapist"):
                self.offered[int(req["id"])] = int(offer["therapist"]["id"])
                self._changed.set()

    async def connect(self) -> "Requester":
        await self.sio.connect(self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=WAIT_S)
        return self

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=WAIT_S)

    async def offered_to(self, request_id: int, timeout: float) -> int | None:
        deadline = asyncio.get_running_loop().time() + timeout
        while request_id not in self.offered:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.offered[request_id]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5)


# ---------------------------------------------------------------- measuring


@dataclass
class Phase:
    """The samples of one side (floor or application), measured rounds only."""

    fanout: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    winner_acks: list[float] = field(default_factory=list)
    trigger_acks: list[float] = field(default_factory=list)   # pool.request / broadcast: emit -> ack
    bursts: list[float] = field(default_factory=list)         # first accept sent -> last ack received
    round_max_fanout: list[float] = field(default_factory=list)
    busy_s: float = 0.0                                       # the measured rounds' own durations, added up
    rounds: int = 0
    missing: int = 0


@dataclass
class Round:
    request_id: int
    winners: list[int]
    codes: dict[str, int]
    offered_to: int | None = None


def socket_specs(accounts: list[Account] | None, count: int, racers: int, urls: list[str],
                 workers: int) -> list[list[dict[str, Any]]]:
    """Dashboard i goes to client process i % workers and server i % len(urls); the first `racers` race."""
    specs: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    for i in range(count):
        specs[i % workers].append({
            "url": urls[i % len(urls)], "token": accounts[i].token if accounts else None,
            "tag": accounts[i].id if accounts else i, "racer": i < racers,
        })
    return specs


async def connect_dashboards(load: LoadClients, group: str, specs: list[list[dict[str, Any]]], watch: str,
                             servers: int) -> None:
    """Connect every dashboard, about 10 connection attempts in flight per server process: each authenticates against
    the database, and more at once overflow the server's connection pool (4 processes x (10 + 20 overflow) is more
    than PostgreSQL's default 100 connections)."""
    concurrency = max(1, CONNECTS_PER_SERVER * servers // load.processes)
    replies = await load.each([
        {"op": "connect", "group": group, "sockets": s, "watch": watch, "key": "request.id",
         "concurrency": concurrency, "timeout": WAIT_S}
        for s in specs
    ], timeout=300)
    failures = sum(r["failures"] for r in replies)
    if failures:
        raise RuntimeError(f"{failures} {group} dashboards could not connect: {[r['failed'] for r in replies]}")


async def race(load: LoadClients, group: str, phase: Phase, measured: bool, t0: float, key: int, event: str,
               data: dict[str, Any]) -> list[list[Any]]:
    """Wait until every dashboard of `group` saw `key`, then race `event` from every racer; record the samples."""
    seen = await load.all({"op": "seen", "group": group, "key": key, "timeout": WAIT_S}, timeout=WAIT_S + 10)
    phase.missing += sum(r["missing"] for r in seen)
    races = await load.all({"op": "race", "group": group, "event": event, "data": data, "timeout": WAIT_S},
                           timeout=WAIT_S + 10)
    results = [res for r in races for res in r["results"]]
    if measured:
        fanout = [t - t0 for r in seen for t in r["times"]]
        phase.fanout.extend(fanout)
        if fanout:
            phase.round_max_fanout.append(max(fanout))
        done = [res for res in results if res[4] is not None]
        phase.acks.extend(res[4] - res[3] for res in done)
        phase.winner_acks.extend(res[4] - res[3] for res in done if res[1])
        if done:
            phase.bursts.append(max(res[4] for res in done) - min(res[3] for res in done))
    return results


@contextlib.asynccontextmanager
async def profiled(args: argparse.Namespace, pids: dict[str, list[int]]) -> Any:
    """With --profile DIR: py-spy samples every server process while the measured rounds run (raw collapsed stacks)."""
    if not args.profile:
        yield
        return
    exe = shutil.which("py-spy") or os.environ.get("PY_SPY", "")
    if not exe:
        raise SystemExit("--profile needs py-spy on PATH (or PY_SPY=/path/to/py-spy)")
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for name, group in pids.items():
            for n, pid in enumerate(group):
                procs.append(await asyncio.create_subprocess_exec(
                    exe, "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--format", "raw",
                    "-o", str(out / f"{name}-{n}.txt"), stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                ))
        await asyncio.sleep(1.0)  # py-spy attaches
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def card(seq: int) -> dict[str, Any]:
    """A payload shaped and sized like the application's `pool.request_added` card."""
    now = datetime.now(timezone.utc)
    return {"request": {
        "id": seq, "client": {"id": 100000 + seq, "display_name": "Client 0", "minor": False}, "reason": REASON,
        "notes": "", "expertise": [], "minor": False, "created_at": now.isoformat(), "expires_at": now.isoformat(),
    }}


async def floor_round(load: LoadClients, phase: Phase, measured: bool, sender: Requester, seq: int) -> None:
    """The floor: broadcast a card to every dashboard; once all have it, every racer emits `echo` at once."""
    t0 = time.perf_counter()
    ack = await sender.call("broadcast", card(seq))
    if measured:
        phase.trigger_acks.append(time.perf_counter() - t0)
    if not (isinstance(ack, dict) and ack.get("ok")):
        raise RuntimeError(f"floor broadcast failed: {ack}")
    results = await race(load, "floor", phase, measured, t0, seq, "echo", {"request_id": seq})
    bad = [res for res in results if not res[1]]
    if bad:
        raise RuntimeError(f"floor echo failed: {bad[:3]}")
    if measured:
        phase.busy_s += time.perf_counter() - t0
        phase.rounds += 1


async def app_round(load: LoadClients, phase: Phase, measured: bool, client: Requester, n: int) -> Round:
    """The application: a client asks; once every dashboard shows it, every racer accepts at once; the client is
    offered the winner, then withdraws (which frees the winner for the next round)."""
    t0 = time.perf_counter()
    ack = await client.call("pool.request", {"reason": REASON})
    if measured:
        phase.trigger_acks.append(time.perf_counter() - t0)
    if not (isinstance(ack, dict) and ack.get("ok")):
        raise RuntimeError(f"pool.request failed in round {n}: {ack}")
    request_id = int(ack["request"]["id"])
    results = await race(load, "app", phase, measured, t0, request_id, "pool.accept", {"request_id": request_id})
    winners = [int(res[0]) for res in results if res[1]]
    codes: dict[str, int] = {}
    for res in results:
        if not res[1]:
            codes[str(res[2])] = codes.get(str(res[2]), 0) + 1
    offered = await client.offered_to(request_id, 5.0) if winners else None
    cancel = await client.call("pool.cancel", {"request_id": request_id})
    if not (isinstance(cancel, dict) and cancel.get("ok")):
        raise RuntimeError(f"pool.cancel failed in round {n}: {cancel}")
    if measured:
        phase.busy_s += time.perf_counter() - t0
        phase.rounds += 1
    return Round(request_id, winners, codes, offered)


async def measure(args: argparse.Namespace, backing: Backing, cluster: Cluster, therapists: list[Account],
                  clients: list[Account], load: LoadClients) -> tuple[Phase, Phase, list[Round]]:
    """Floor and application side by side, their rounds interleaved, so both meet the same machine at the same time
    (other processes, the servers' ping traffic, garbage collection): floor round, application round, and so on."""
    floor_phase, app_phase, rounds = Phase(), Phase(), []
    floor = FloorCluster(args.processes, backing.redis_url, channel=f"{backing.redis_prefix}:floor",
                         workdir=backing.workdir / "logs")
    async with floor:
        sender: Requester | None = None
        requesters: list[Requester] = []
        try:
            await connect_dashboards(load, "floor", socket_specs(None, args.dashboards, args.racers, floor.urls,
                                                                 load.processes), "fanout", args.processes)
            await connect_dashboards(load, "app", socket_specs(therapists, args.dashboards, args.racers, cluster.urls,
                                                               load.processes), "pool.request_added", args.processes)
            sender = await Requester(floor.urls[0], None).connect()
            for n, account in enumerate(clients):
                requesters.append(await Requester(cluster.urls[(n + 1) % len(cluster.urls)], account.token).connect())
            await asyncio.sleep(1.0)  # the dashboard snapshots pushed after connecting

            async def pair(r: int, measured: bool) -> None:
                assert sender is not None
                begin = time.perf_counter()
                await floor_round(load, floor_phase, measured, sender, r + 1)
                rounds.append(await app_round(load, app_phase, measured, requesters[r % len(requesters)], r))
                # a racer sends one event a round: stay under the server's per-socket throttle
                await asyncio.sleep(max(0.0, MIN_ROUND_S - (time.perf_counter() - begin)))

            for r in range(args.warmup):
                await pair(r, False)
            await asyncio.sleep(0.5)  # let the first request's SMS batch settle before measuring
            async with profiled(args, {"floor": floor.pids, "app": cluster.pids}):
                for r in range(args.warmup, args.warmup + args.requests):
                    await pair(r, True)
        finally:
            if sender is not None:
                await sender.close()
            for requester in requesters:
                await requester.close()
            await load.all({"op": "disconnect"}, timeout=60)
    return floor_phase, app_phase, rounds


async def check_database(database_url: str, rounds: list[Round]) -> list[str]:
    """What pool_offers recorded must be what the racers and the client were told."""
    from sqlalchemy import select

    from core.db import Database
    from pool.models import PoolOffer

    db = Database(database_url)
    try:
        async with db.session() as session:
            rows = (await session.execute(
                select(PoolOffer.request_id, PoolOffer.therapist_id, PoolOffer.outcome)
                .where(PoolOffer.request_id.in_([r.request_id for r in rounds]))
            )).all()
    finally:
        await db.dispose()
    recorded: dict[int, list[tuple[int, str]]] = {}
    for request_id, therapist_id, outcome in rows:
        recorded.setdefault(request_id, []).append((therapist_id, outcome.value))
    problems = []
    for r in rounds:
        got = recorded.get(r.request_id, [])
        if len(r.winners) != 1:
            problems.append(f"request {r.request_id}: {len(r.winners)} accepts were acked ok: {r.winners}")
        if set(r.codes) - {"taken"}:
            problems.append(f"request {r.request_id}: losers were told {r.codes}")
        if [t for t, _ in got] != r.winners[:1] or len(got) != len(r.winners):
            problems.append(f"request {r.request_id}: the database recorded offers {got}, the acks said {r.winners}")
        elif got and got[0][1] != "cancelled":
            problems.append(f"request {r.request_id}: the offer ended {got[0][1]}, not cancelled")
        if r.winners and r.offered_to != r.winners[0]:
            problems.append(f"request {r.request_id}: the client was offered {r.offered_to}, the ack said {r.winners}")
    return problems


# ---------------------------------------------------------------- the run


def figures(args: argparse.Namespace, backing: Backing, floor: Phase, app: Phase,
            rounds: list[Round]) -> dict[str, Any]:
    winners = [len(r.winners) for r in rounds]
    out: dict[str, Any] = {
        "processes": args.processes, "racers": args.racers, "dashboards": args.dashboards, "requests": args.requests,
        "winners_per_request_min": min(winners) if winners else 0,
        "winners_per_request_max": max(winners) if winners else 0,
        "winner_ack_p50_ms": ms(pct(app.winner_acks, 50)), "winner_ack_p99_ms": ms(pct(app.winner_acks, 99)),
        "accept_to_ack_p50_ms": ms(pct(app.acks, 50)), "accept_to_ack_p99_ms": ms(pct(app.acks, 99)),
        "fanout_p50_ms": ms(pct(app.fanout, 50)), "fanout_p99_ms": ms(pct(app.fanout, 99)),
        "claims_per_s": round(app.rounds / app.busy_s, 2) if app.busy_s else None,
        "request_ack_p50_ms": ms(pct(app.trigger_acks, 50)), "request_ack_p99_ms": ms(pct(app.trigger_acks, 99)),
        "race_burst_p50_ms": ms(pct(app.bursts, 50)), "race_burst_p99_ms": ms(pct(app.bursts, 99)),
        "floor_ack_p50_ms": ms(pct(floor.acks, 50)), "floor_ack_p99_ms": ms(pct(floor.acks, 99)),
        "floor_fanout_p50_ms": ms(pct(floor.fanout, 50)), "floor_fanout_p99_ms": ms(pct(floor.fanout, 99)),
        "floor_broadcast_ack_p99_ms": ms(pct(floor.trigger_acks, 99)),
        "floor_race_burst_p99_ms": ms(pct(floor.bursts, 99)),
        "floor_rounds_per_s": round(floor.rounds / floor.busy_s, 2) if floor.busy_s else None,
        "fanout_missing": app.missing, "floor_fanout_missing": floor.missing,
        "client_processes": args.client_processes, "warmup_rounds": args.warmup,
        "database": backing.database, "redis": bool(backing.redis_url),
    }
    ack_target = 1.5 if args.processes == 1 else 2.0
    out["ack_ratio"] = _ratio(out["accept_to_ack_p99_ms"], out["floor_ack_p99_ms"])
    out["ack_target_ratio"] = ack_target
    out["fanout_ratio"] = _ratio(out["fanout_p99_ms"], out["floor_fanout_p99_ms"])
    out["fanout_target_ratio"] = 1.5
    out["ack_target_met"] = out["ack_ratio"] is not None and out["ack_ratio"] <= ack_target
    out["fanout_target_met"] = out["fanout_ratio"] is not None and out["fanout_ratio"] <= 1.5
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def table(f: dict[str, Any]) -> str:
    def row(name: str, app: Any, floor: Any = "", note: str = "") -> str:
        return f"  {name:<28}{_fmt(app):>12}{_fmt(floor):>12}  {note}"

    lines = [
        f"pool race: {f['processes']} server process(es), {f['database']}, redis={f['redis']}, {f['racers']} racers, "
        f"{f['dashboards']} dashboards over {f['client_processes']} client processes, {f['requests']} requests",
        f"  {'':<28}{'app':>12}{'floor':>12}",
        row("winners per request", f"{f['winners_per_request_min']}..{f['winners_per_request_max']}", "",
            "must be 1..1"),
        row("winner ack p50 / p99 ms", f"{_fmt(f['winner_ack_p50_ms'])}/{_fmt(f['winner_ack_p99_ms'])}"),
        row("accept->ack p50 ms", f["accept_to_ack_p50_ms"], f["floor_ack_p50_ms"]),
        row("accept->ack p99 ms", f["accept_to_ack_p99_ms"], f["floor_ack_p99_ms"],
            f"ratio {f['ack_ratio']} (target <= {f['ack_target_ratio']}) {'MET' if f['ack_target_met'] else 'MISSED'}"),
        row("fan-out p50 ms", f["fanout_p50_ms"], f["floor_fanout_p50_ms"]),
        row("fan-out p99 ms", f["fanout_p99_ms"], f["floor_fanout_p99_ms"],
            f"ratio {f['fanout_ratio']} (target <= 1.5) {'MET' if f['fanout_target_met'] else 'MISSED'}"),
        row("request/broadcast ack p99", f["request_ack_p99_ms"], f["floor_broadcast_ack_p99_ms"]),
        row("race burst p99 ms", f["race_burst_p99_ms"], f["floor_race_burst_p99_ms"], "first accept sent -> last ack"),
        row("rounds per s", f["claims_per_s"], f["floor_rounds_per_s"],
            "one round at a time: request, race (+ cancel for the app)"),
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


async def run(args: argparse.Namespace) -> int:
    from core.crypto import Keyring

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # SIGTERM still stops what we started
    workdir = Path(tempfile.mkdtemp(prefix="pool_race_"))
    backing: Backing | None = None
    failed = True
    try:
        backing = await open_backing(args, workdir)
        log(f"database {backing.database}, redis {'on' if backing.redis_url else 'off'}, work folder {workdir}")
        cluster = Cluster(
            processes=args.processes, database_url=backing.database_url, redis_url=backing.redis_url,
            redis_prefix=backing.redis_prefix, workdir=workdir / "servers", secret_key=secrets.token_urlsafe(48),
            encryption_keys=Keyring.generate_spec("bench1"),
        )
        async with cluster:
            t = time.perf_counter()
            clients_needed = math.ceil((args.requests + args.warmup) / REQUESTS_PER_CLIENT)
            therapists, clients = await create_accounts(backing.database_url, cluster.secret_key, args.dashboards,
                                                        clients_needed)
            await rest_signin(cluster.urls[0], therapists[0].email)
            log(f"{len(therapists)} therapists and {len(clients)} clients ready in {time.perf_counter() - t:.1f} s")
            async with LoadClients(args.client_processes, workdir / "logs") as load:
                t = time.perf_counter()
                floor, app, rounds = await measure(args, backing, cluster, therapists, clients, load)
                log(f"floor and application measured in {time.perf_counter() - t:.1f} s")
                def slowest(phase: Phase) -> list[int]:
                    return [round(x * 1000) for x in sorted(phase.round_max_fanout)[-5:]]

                log(f"slowest rounds' fan-out (ms): floor {slowest(floor)}, application {slowest(app)}")
        problems = await check_database(backing.database_url, rounds)
        result = figures(args, backing, floor, app, rounds)
        if app.missing or floor.missing:
            problems.append(f"dashboards missed {app.missing} request(s) and {floor.missing} floor broadcast(s)")
        result["checks_passed"] = not problems
        print(table(result))
        for problem in problems[:20]:
            print(f"  FAILED: {problem}")
        print(json.dumps(result), flush=True)
        failed = bool(problems)
        return 1 if problems else 0
    finally:
        if backing is not None:
            await backing.close()
        if failed and not args.keep:
            log(f"logs kept in {workdir}")
        elif not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pool_race",
                                     description="The quick-connect race under load against a bare Socket.IO floor.")
    parser.add_argument("--processes", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--redis-url", default=None,
                        help=f"Redis (default: none with one process, {DEFAULT_REDIS} with more)")
    parser.add_argument("--database-url", default=DEFAULT_POSTGRES,
                        help="PostgreSQL server to create a fresh database on, or 'sqlite' (one process only)")
    parser.add_argument("--racers", type=int, default=None, help="therapists racing for each request (default 50)")
    parser.add_argument("--dashboards", type=int, default=None, help="connected dashboards (default 500)")
    parser.add_argument("--requests", type=int, default=None, help="requests raced for (default 200)")
    parser.add_argument("--client-processes", type=int, default=None,
                        help="client processes holding the dashboards (default: one per 250 dashboards, at most 5)")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured rounds first (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server logs)")
    parser.add_argument("--profile", default="", metavar="DIR",
                        help="sample the server processes with py-spy during the measured rounds (raw stacks in DIR)")
    args = parser.parse_args(argv)
    sizes = {"racers": 5, "dashboards": 20, "requests": 10, "warmup": 1} if args.quick else \
        {"racers": 50, "dashboards": 500, "requests": 200, "warmup": 3}
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.client_processes is None:
        args.client_processes = 1 if args.quick else max(1, min(5, math.ceil(args.dashboards / DASHBOARDS_PER_PROCESS)))
    if args.redis_url is None:
        args.redis_url = DEFAULT_REDIS if args.processes > 1 else ""
    if args.processes < 1 or args.racers < 1 or args.requests < 1 or args.client_processes < 1:
        parser.error("--processes, --racers, --requests and --client-processes must be at least 1")
    if args.dashboards < args.racers:
        parser.error("the racers are dashboards: --dashboards must be at least --racers")
    if args.processes > 1 and not args.redis_url:
        parser.error("several server processes need Redis (--redis-url)")
    return args


def main(argv: list[str] | None = None) -> int:
    import uvloop

    from core.logging import configure_logging

    args = parse_args(argv)
    configure_logging("warning", json=False, stream=sys.stderr)  # the domain code it calls (accounts, wallets) stays quiet
    try:
        return uvloop.run(run(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("interrupted; the servers and client processes it started were stopped")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
