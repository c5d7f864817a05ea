"""Call set-up time: from the client's accept to a working call, as the browsers and the server experience it.

    python -m benchmarks.call_setup [--calls N] [--warmup N] [--join together|staggered] [--database-url URL] [--quick]

The whole server runs in this process (`signalling.app.create_app`, SQLite in a temporary folder, in-memory claims and
presence, an aiohttp `AppRunner` on a free loopback port), so the server's first-frame times and the simulated
browsers' times are read from one clock, `time.monotonic()` (`--database-url` a PostgreSQL URL: a fresh database
on that server instead of SQLite, dropped afterwards). Every WebRTC peer gathers loopback host candidates only
(`use_host_addresses(["127.0.0.1"])`, and the server's `media_host_addresses` setting), no STUN or TURN: the browsers'
peer connections use the join ack's `ice_servers` (none here), so aiortc's own default (Google's public STUN
server) is switched off in this process.

Accounts: one therapist (applied over REST, approved directly in the database, set available over Socket.IO from a
dashboard connection that stays open for the whole run) and enough clients (registered over REST) for the server's
request limit of 5 per client per 10 minutes.

Each call, one after the other (`--warmup` unmeasured calls first, default 1):

1. Both members connect fresh Socket.IO connections (`benchmarks._peers.SimulatedMember`: one browser each).
2. The client emits `pool.request`; the therapist emits `pool.accept`.
3. t0 = time.monotonic(), just before the client emits `pool.respond` (accept, terms, recording consent).
4. On `call.ready` each member emits `call.join` on the same connection, both at once (`--join staggered`: the
   client only after the therapist's join is acknowledged); the member whose ack says `peer_present` makes the
   peer-to-peer offer (audio + video). If both acks say `peer_present: false` nobody would ever offer: the call
   fails at once with that reason. As soon as its `call.join` is acknowledged, each member also opens its
   audio-only link to the server (`call.media.offer`), in parallel with the peer-to-peer connection, as the web
   client does in a call with recording consent.
5. Measured: p2p = max(therapist, client `connectionState == "connected"`) - t0; server first audio, per member =
   the server consumer's (`LevelMeter`) `first_frame_at` - t0.
6. The therapist hangs up (`call.hangup`), both members close, and the run waits until the therapist's dashboard
   shows them free again.

A call that is not set up within 15 s, or fails on the way (an error ack, an exception in a simulated browser), is
counted as failed and reported with its reason. The phases of every call (signalling, ICE gathering, ICE checks,
DTLS, the server's answer, the first frame sent) are recorded too and summarised as p50/p95 in `breakdown_ms`.

Output: a table (p50/p95/max against the targets: p2p p95 <= 1000 ms, server first audio p95 <= 600 ms), then, as the
last line, one JSON object: calls, failed, p2p_connected_p50_ms, p2p_connected_p95_ms, server_first_audio_p50_ms,
server_first_audio_p95_ms, target_p2p_p95_ms, target_server_audio_p95_ms, and details. Exit 0 whether or not a
target is met (this is a measurement); exit 1 if any call (warm-up included) or the set-up failed.
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
import sys
import tempfile
import time
import traceback
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import socketio
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcicetransport import RTCIceGatherer

from benchmarks._cluster import BENCH_DEPOSIT_PENCE
from benchmarks._peers import PcmTrack, SimulatedMember
from media.addresses import use_host_addresses

TARGET_P2P_P95_MS = 1000
TARGET_SERVER_AUDIO_P95_MS = 600
CALL_TIMEOUT_S = 15.0
CLEANUP_TIMEOUT_S = 10.0
PASSWORD = "bench horse battery staple"
REASON = "I have been feeling anxious all week and would like to talk to someone now."
REQUESTS_PER_CLIENT = 5   # the server's default requests_per_client per requests_window_s


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ---------------------------------------------------------------- a simulated browser with a stopwatch


class TimedMember(SimulatedMember):
    """`SimulatedMember` that records when each step of the set-up happened (time.monotonic), without changing
    what it does. `open_server_link` is the base class's, step for step, with marks in between."""

    def __init__(self, url: str, account: "Account", role: str) -> None:
        super().__init__(url, account.token)
        self.user_id, self.role = account.id, role
        self.marks: dict[str, float] = {}
        self.joined = asyncio.Event()
        self.offerer = False
        self.link_track: PcmTrack | None = None

    def mark(self, name: str, at: float | None = None) -> None:
        self.marks.setdefault(name, time.monotonic() if at is None else at)

    def watch(self, pc: RTCPeerConnection, prefix: str) -> None:
        @pc.on("icegatheringstatechange")
        def _gathering() -> None:
            self.mark(f"{prefix}_gathering_{pc.iceGatheringState}")

        @pc.on("iceconnectionstatechange")
        def _ice() -> None:
            self.mark(f"{prefix}_ice_{pc.iceConnectionState}")

        @pc.on("connectionstatechange")
        def _state() -> None:
            self.mark(f"{prefix}_{pc.connectionState}")

    async def call(self, event: str, data: dict[str, Any], timeout: float = 10) -> Any:
        self.mark(f"{event}_sent")
        ack = await super().call(event, data, timeout)
        self.mark(f"{event}_ack")
        if event == "call.join" and isinstance(ack, dict) and ack.get("ok"):
            self.offerer = bool(ack.get("peer_present"))
            self.joined.set()
        return ack

    def _new_p2p(self) -> RTCPeerConnection:
        self.mark("p2p_created")
        pc = super()._new_p2p()
        self.watch(pc, "p2p")
        return pc

    async def _send(self, signal: dict[str, Any]) -> None:
        self.mark(f"{signal['kind']}_made")   # the local description is ready (candidates gathered)
        await super()._send(signal)
        self.mark(f"{signal['kind']}_relayed")

    async def _on_signal(self, data: dict[str, Any]) -> None:
        kind = data.get("kind")
        self.mark(f"{kind}_received")
        await super()._on_signal(data)
        self.mark(f"{kind}_applied")

    async def open_server_link(self, track: MediaStreamTrack | None = None) -> dict[str, Any]:
        self.mark("link_start")
        pc = RTCPeerConnection()
        self.watch(pc, "link")
        self.link_track = PcmTrack(self.audio) if track is None else None
        pc.addTrack(track or self.link_track)
        await pc.setLocalDescription(await pc.createOffer())
        self.mark("link_offer_made")
        ack = await self.call("call.media.offer", {"call_id": self.call_id, "sdp": pc.localDescription.sdp})
        if not ack.get("ok"):
            await pc.close()
            return ack
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
        self.mark("link_answer_applied")
        self.server_link = pc
        return ack

    def first_link_frame_sent(self) -> float | None:
        return None if self.link_track is None else self.link_track._start  # noqa: SLF001 - set on the first recv()

    async def enter(self, call_id: int, after: "TimedMember | None" = None) -> None:
        """What the web client does on `call.ready`: join; once joined, open the server link in parallel.
        With `after`, wait until that member has joined first (`--join staggered`)."""
        self.mark("ready")
        if after is not None:
            await after.joined.wait()
        join = asyncio.create_task(self.join(call_id), name=f"join-{self.role}")
        joined = asyncio.create_task(self.joined.wait())
        await asyncio.wait({join, joined}, return_when=asyncio.FIRST_COMPLETED)
        joined.cancel()
        if join.done() and not self.joined.is_set():
            await join  # raises the join's error
        link_ack, _ = await asyncio.gather(self.open_server_link(), join)
        if not link_ack.get("ok"):
            raise RuntimeError(f"{self.role}: server link refused: {link_ack}")


# ---------------------------------------------------------------- the server in this process


@dataclass
class Server:
    app: web.Application
    runner: web.AppRunner
    url: str
    answer_s: list[tuple[int, int, float, float]] = field(default_factory=list)   # call, user, started, answered
    server_connected: dict[tuple[int, int], float] = field(default_factory=dict)

    @property
    def svc(self) -> Any:
        from signalling.http import SERVICES

        return self.app[SERVICES]

    def time_the_media_hub(self) -> None:
        """Record how long the server's peer takes to answer, and when it sees its connection up (instance wrapper)."""
        hub = self.svc.media
        original = hub.offer

        async def offer(call_id: int, user_id: int, *args: Any, **kwargs: Any) -> str:
            started = time.monotonic()
            answer = await original(call_id, user_id, *args, **kwargs)
            self.answer_s.append((call_id, user_id, started, time.monotonic()))
            peer = hub.peers.get((call_id, user_id))
            if peer is not None:
                key = (call_id, user_id)

                @peer.pc.on("connectionstatechange")
                def _connected() -> None:
                    if peer.pc.connectionState == "connected":
                        self.server_connected.setdefault(key, time.monotonic())

            return answer

        hub.offer = offer


@asynccontextmanager
async def database(url: str, workdir: Path) -> AsyncIterator[str]:
    """SQLite in the run's folder (`sqlite`), or a fresh PostgreSQL database on the server of `url`, dropped after."""
    if url == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        return
    import asyncpg

    admin_url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{admin_url.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def start_server(workdir: Path, database_url: str) -> Server:
    from core.crypto import Keyring
    from core.settings import load_settings
    from signalling.app import create_app

    settings = load_settings({}, overrides={
        "env": "test",
        "data_dir": str(workdir / "data"),
        "database_url": database_url,
        "secret_key": secrets.token_urlsafe(48),
        "encryption_keys": Keyring.generate_spec("bench1"),
        "ice_loopback_only": True,
        "media_host_addresses": "127.0.0.1",
        "log_level": "warning",
    })
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server = Server(app, runner, f"http://127.0.0.1:{port}")
    server.time_the_media_hub()
    return server


async def stop_server(server: Server, timeout: float = 30) -> str | None:
    """`runner.cleanup()`, once the server has dropped every Socket.IO connection the run closed: python-engineio's
    server-wide disconnect (the app's shutdown hook) can wait forever (`AsyncSocket.close` -> `queue.join()`) on a
    connection its client is closing at that very moment."""
    sockets = server.svc.sio.eio.sockets
    deadline = time.monotonic() + 5
    while sockets and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(server.runner.cleanup(), timeout)
    except Exception as exc:  # noqa: BLE001 - reported, and the run exits non-zero
        log(traceback.format_exc())
        return f"runner.cleanup() failed: {type(exc).__name__}: {exc} ({len(sockets)} connections were still open)"
    return None


# ---------------------------------------------------------------- accounts


@dataclass
class Account:
    id: int
    token: str


async def register_client(http: aiohttp.ClientSession, server: Server, n: int) -> Account:
    """A client registered over REST, with money in the wallet through the ledger (asking for a session needs it)."""
    from billing.wallet import credit_wallet

    body = {"email": f"bench-client{n}-{secrets.token_hex(4)}@example.org", "password": PASSWORD,
            "display_name": f"Client {n}", "date_of_birth": "1990-05-17"}
    async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
        data = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"client registration failed: {resp.status} {data}")
    account = Account(data["user"]["id"], data["token"])
    await credit_wallet(server.svc.db, server.svc.clock, account.id, BENCH_DEPOSIT_PENCE, key=f"bench:{account.id}")
    return account


async def register_therapist(http: aiohttp.ClientSession, server: Server) -> Account:
    from accounts.models import ApplicationStatus, TherapistProfile

    body = {
        "email": f"bench-therapist-{secrets.token_hex(4)}@example.org", "password": PASSWORD, "display_name": "Dr Bench",
        "qualifications": "MSc Counselling", "registration_body": "BACP", "registration_number": "123456",
        "insurance_provider": "Balens", "insurance_expiry": "2030-01-01", "bio": "I listen.",
        "expertise": ["anxiety"], "rate_pence_per_minute": 100,
    }
    async with http.post(f"{server.url}/api/auth/apply", json=body) as resp:
        data = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"therapist application failed: {resp.status} {data}")
    account = Account(data["user"]["id"], data["token"])
    svc = server.svc
    async with svc.db.transaction() as session:   # approval as tests/conftest.approve_therapist does it
        profile = await session.get(TherapistProfile, account.id)
        assert profile is not None
        profile.status = ApplicationStatus.approved
        profile.reviewed_at = svc.clock.now()
    return account


async def ok(sio: Any, event: str, data: dict[str, Any], who: str) -> dict[str, Any]:
    ack = await sio.call(event, data, timeout=10)
    if not isinstance(ack, dict) or not ack.get("ok"):
        raise RuntimeError(f"{who} {event}: {ack}")
    return ack


# ---------------------------------------------------------------- one call


@dataclass
class CallResult:
    index: int
    warmup: bool
    call_id: int | None = None
    error: str | None = None
    p2p_s: float | None = None
    first_audio_s: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.error is not None


def phases_of(t0: float, therapist: TimedMember, client: TimedMember, server: Server, call_id: int,
              first_frames: dict[str, float]) -> dict[str, float]:
    """The steps of the set-up, in seconds after t0 (or as durations, for the `d_` entries)."""
    out: dict[str, float] = {}
    offerer, answerer = (therapist, client) if therapist.offerer else (client, therapist)

    def at(name: str, member: TimedMember, mark: str) -> None:
        if mark in member.marks:
            out[name] = member.marks[mark] - t0

    def dur(name: str, member: TimedMember, start: str, end: str) -> None:
        if start in member.marks and end in member.marks:
            out[name] = member.marks[end] - member.marks[start]

    at("respond_ack", client, "pool.respond_ack")
    for m in (therapist, client):
        at(f"ready_{m.role}", m, "ready")
        at(f"joined_{m.role}", m, "call.join_ack")
    out["offerer_is_client"] = 1.0 if offerer is client else 0.0
    at("p2p_offer_sent", offerer, "offer_made")
    dur("d_p2p_offer_make", offerer, "p2p_created", "offer_made")             # createOffer + setLocalDescription
    dur("d_p2p_offer_gather", offerer, "p2p_gathering_gathering", "p2p_gathering_complete")
    at("p2p_offer_received", answerer, "offer_received")
    dur("d_p2p_answer_make", answerer, "offer_received", "answer_made")       # setRemote + createAnswer + setLocal
    at("p2p_answer_sent", answerer, "answer_made")
    at("p2p_answer_received", offerer, "answer_received")
    at("p2p_answer_applied", offerer, "answer_applied")
    for m, who in ((offerer, "offerer"), (answerer, "answerer")):
        at(f"p2p_ice_checking_{who}", m, "p2p_ice_checking")
        at(f"p2p_ice_done_{who}", m, "p2p_ice_completed")
        at(f"p2p_connected_{who}", m, "p2p_connected")
        dur(f"d_p2p_dtls_{who}", m, "p2p_ice_completed", "p2p_connected")      # DTLS (+ SCTP/SRTP set-up) after ICE
    for m in (therapist, client):
        r = m.role
        at(f"link_start_{r}", m, "link_start")
        dur(f"d_link_offer_make_{r}", m, "link_start", "link_offer_made")
        dur(f"d_link_answer_rtt_{r}", m, "link_offer_made", "call.media.offer_ack")
        at(f"link_answer_applied_{r}", m, "link_answer_applied")
        at(f"link_ice_done_{r}", m, "link_ice_completed")
        at(f"link_connected_{r}", m, "link_connected")
        sent = m.first_link_frame_sent()
        if sent is not None:
            out[f"link_first_frame_sent_{r}"] = sent - t0
            first = first_frames.get(r)
            if first is not None:
                out[f"d_server_first_frame_after_sent_{r}"] = first - sent   # RTP, jitter buffer prefetch, decode
    for cid, uid, started, answered in server.answer_s:
        if cid == call_id:
            role = "therapist" if uid == therapist.user_id else "client"
            out[f"d_server_answer_{role}"] = answered - started
            if (cid, uid) in server.server_connected:
                out[f"server_peer_connected_{role}"] = server.server_connected[(cid, uid)] - t0
    return out


async def wait_therapist_free(dashboard: socketio.AsyncClient, timeout: float = CLEANUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ack = await dashboard.call("pool.snapshot", {}, timeout=10)
        if isinstance(ack, dict) and ack.get("ok") and ack.get("busy") is None and not ack.get("offers"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the therapist is not free again after the call: {ack}")
        await asyncio.sleep(0.1)


async def one_call(index: int, warmup: bool, server: Server, therapist_account: Account, client_account: Account,
                   dashboard: socketio.AsyncClient, staggered: bool) -> CallResult:
    result = CallResult(index, warmup)
    therapist = TimedMember(server.url, therapist_account, "therapist")
    client = TimedMember(server.url, client_account, "client")
    entering: list[asyncio.Task[None]] = []
    request_id: int | None = None

    def on_ready(member: TimedMember) -> Any:
        async def handler(data: dict[str, Any]) -> None:
            if member.call_id is None and not member.joined.is_set() and not entering_of(member):
                after = therapist if staggered and member is client else None
                task = asyncio.create_task(member.enter(int(data["call"]["id"]), after), name=f"enter-{member.role}")
                task.member = member  # type: ignore[attr-defined]
                entering.append(task)
        return handler

    def entering_of(member: TimedMember) -> bool:
        return any(getattr(t, "member", None) is member for t in entering)

    therapist.sio.on("call.ready", on_ready(therapist))
    client.sio.on("call.ready", on_ready(client))

    async def set_up() -> None:
        nonlocal request_id
        await asyncio.gather(therapist.connect(), client.connect())
        req = await ok(client.sio, "pool.request", {"reason": REASON, "expertise": ["anxiety"]}, "client")
        request_id = int(req["request"]["id"])
        await ok(therapist.sio, "pool.accept", {"request_id": request_id}, "therapist")
        t0 = time.monotonic()
        client.mark("pool.respond_sent", t0)
        ack = await client.call("pool.respond", {
            "request_id": request_id, "accept": True, "accept_terms": True,
            "terms_version": server.svc.settings.terms_version, "recording_consent": True,
        })
        if not ack.get("ok"):
            raise RuntimeError(f"client pool.respond: {ack}")
        result.call_id = call_id = int(ack["call"]["id"])
        consumers = server.svc.media.consumers
        while True:
            for task in entering:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            for m in (therapist, client):
                if m.errors:
                    raise RuntimeError(f"{m.role}: {m.errors}")
            if therapist.joined.is_set() and client.joined.is_set() and not (therapist.offerer or client.offerer):
                raise RuntimeError("both call.join acks said peer_present: false, so neither member makes the "
                                   "peer-to-peer offer (the joins raced)")
            found = consumers(call_id)
            firsts = {role: getattr(c, "first_frame_at", None) for role, c in found.items()}
            if therapist.connected_at and client.connected_at and len(firsts) == 2 and all(firsts.values()):
                break
            await asyncio.sleep(0.005)
        result.p2p_s = max(therapist.connected_at, client.connected_at) - t0
        result.first_audio_s = {role: at - t0 for role, at in firsts.items()}  # type: ignore[operator]
        result.phases = phases_of(t0, therapist, client, server, call_id, firsts)  # type: ignore[arg-type]

    try:
        try:
            await asyncio.wait_for(set_up(), CALL_TIMEOUT_S)
        except asyncio.TimeoutError:
            state = {m.role: {"joined": m.joined.is_set(), "offerer": m.offerer,
                              "p2p": m.p2p.connectionState if m.p2p else None,
                              "link": m.server_link.connectionState if m.server_link else None,
                              "marks": sorted(m.marks)} for m in (therapist, client)}
            frames = {role: getattr(c, "frames", None)
                      for role, c in (server.svc.media.consumers(result.call_id) if result.call_id else {}).items()}
            result.error = f"not set up within {CALL_TIMEOUT_S:.0f} s: {state}; server frames {frames}"
        except Exception as exc:  # noqa: BLE001 - a failed call is counted and reported
            result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await tear_down(result, request_id, therapist, client, entering, dashboard)
    return result


async def tear_down(result: CallResult, request_id: int | None, therapist: TimedMember, client: TimedMember,
                    entering: list[asyncio.Task[None]], dashboard: socketio.AsyncClient) -> None:
    async def steps() -> None:
        if result.call_id is not None:
            ack = await therapist.call("call.hangup", {"call_id": result.call_id})
            if not ack.get("ok") and ack.get("error", {}).get("code") != "call_ended":
                ack = await client.call("call.hangup", {"call_id": result.call_id})
                if not ack.get("ok"):
                    raise RuntimeError(f"hang-up refused: {ack}")
        elif request_id is not None and client.sio.connected:
            await client.call("pool.cancel", {"request_id": request_id})
        for task in entering:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for m in (therapist, client):
            await m.close()
        await wait_therapist_free(dashboard)

    try:
        await asyncio.wait_for(steps(), CLEANUP_TIMEOUT_S * 2)
    except Exception as exc:  # noqa: BLE001
        note = f"clean-up failed: {type(exc).__name__}: {exc}"
        result.error = f"{result.error}; {note}" if result.error else note
        for m in (therapist, client):
            with contextlib.suppress(Exception):
                await m.close()
        raise RuntimeError(note) from exc


# ---------------------------------------------------------------- report


SUMMARY_PHASES = [
    ("respond_ack", "pool.respond acknowledged"),
    ("ready_therapist", "call.ready at the therapist"),
    ("ready_client", "call.ready at the client"),
    ("joined_therapist", "call.join ack, therapist"),
    ("joined_client", "call.join ack, client"),
    ("d_p2p_offer_make", "  p2p offer: createOffer+setLocal (dur)"),
    ("d_p2p_offer_gather", "  of which ICE gathering (dur)"),
    ("p2p_offer_sent", "p2p offer made (offerer)"),
    ("p2p_offer_received", "p2p offer received (answerer)"),
    ("d_p2p_answer_make", "  answer: setRemote+createAnswer+setLocal (dur)"),
    ("p2p_ice_checking_answerer", "p2p ICE checking, answerer"),
    ("p2p_answer_received", "p2p answer received (offerer)"),
    ("p2p_answer_applied", "p2p answer applied (offerer)"),
    ("p2p_ice_done_answerer", "p2p ICE completed, answerer"),
    ("p2p_ice_done_offerer", "p2p ICE completed, offerer"),
    ("d_p2p_dtls_answerer", "  DTLS after ICE, answerer (dur)"),
    ("d_p2p_dtls_offerer", "  DTLS after ICE, offerer (dur)"),
    ("p2p_connected_answerer", "p2p connected, answerer"),
    ("p2p_connected_offerer", "p2p connected, offerer"),
    ("link_start_therapist", "server link started, therapist"),
    ("link_start_client", "server link started, client"),
    ("d_link_offer_make_therapist", "  link offer made, therapist (dur)"),
    ("d_link_offer_make_client", "  link offer made, client (dur)"),
    ("d_link_answer_rtt_therapist", "  call.media.offer round trip, therapist (dur)"),
    ("d_link_answer_rtt_client", "  call.media.offer round trip, client (dur)"),
    ("d_server_answer_therapist", "    server peer answer, therapist (dur)"),
    ("d_server_answer_client", "    server peer answer, client (dur)"),
    ("link_ice_done_therapist", "link ICE completed, therapist"),
    ("link_ice_done_client", "link ICE completed, client"),
    ("link_connected_therapist", "link connected, therapist"),
    ("link_connected_client", "link connected, client"),
    ("server_peer_connected_therapist", "server peer connected, therapist"),
    ("server_peer_connected_client", "server peer connected, client"),
    ("link_first_frame_sent_therapist", "first link frame sent, therapist"),
    ("link_first_frame_sent_client", "first link frame sent, client"),
    ("d_server_first_frame_after_sent_therapist", "  server's first frame after first sent, therapist (dur)"),
    ("d_server_first_frame_after_sent_client", "  server's first frame after first sent, client (dur)"),
]


def summarise(results: list[CallResult], setup_error: str | None, args: argparse.Namespace, wall_s: float) -> dict[str, Any]:
    measured = [r for r in results if not r.warmup and not r.failed]
    p2p = [r.p2p_s for r in measured if r.p2p_s is not None]
    audio = [v for r in measured for v in r.first_audio_s.values()]
    breakdown: dict[str, dict[str, float | None]] = {}
    for key, _ in SUMMARY_PHASES:
        values = [r.phases[key] for r in measured if key in r.phases]
        if values:
            breakdown[key] = {"p50": ms(pct(values, 50)), "p95": ms(pct(values, 95)), "max": ms(max(values))}
    failures = [{"call": r.index, "warmup": r.warmup, "error": r.error} for r in results if r.failed]
    load = os.getloadavg()
    return {
        "calls": len([r for r in results if not r.warmup]),
        "failed": len(failures),
        "p2p_connected_p50_ms": ms(pct(p2p, 50)),
        "p2p_connected_p95_ms": ms(pct(p2p, 95)),
        "p2p_connected_max_ms": ms(max(p2p)) if p2p else None,
        "server_first_audio_p50_ms": ms(pct(audio, 50)),
        "server_first_audio_p95_ms": ms(pct(audio, 95)),
        "server_first_audio_max_ms": ms(max(audio)) if audio else None,
        "target_p2p_p95_ms": TARGET_P2P_P95_MS,
        "target_server_audio_p95_ms": TARGET_SERVER_AUDIO_P95_MS,
        "p2p_target_met": None if not p2p else ms(pct(p2p, 95)) <= TARGET_P2P_P95_MS,  # type: ignore[operator]
        "server_audio_target_met": None if not audio else ms(pct(audio, 95)) <= TARGET_SERVER_AUDIO_P95_MS,  # type: ignore[operator]
        "measured_calls": len(measured),
        "warmup_calls": len([r for r in results if r.warmup]),
        "setup_error": setup_error,
        "failures": failures,
        "per_call_ms": [{"call": r.index, "p2p": ms(r.p2p_s), **{f"audio_{k}": ms(v) for k, v in sorted(r.first_audio_s.items())},
                         "offerer": "client" if r.phases.get("offerer_is_client") else "therapist"} for r in measured],
        "breakdown_ms": breakdown,
        "loadavg_1m": round(load[0], 2),
        "cpus": os.cpu_count(),
        "wall_s": round(wall_s, 1),
        "quick": bool(args.quick),
        "join": args.join,
        "database": "sqlite" if args.database_url == "sqlite" else "postgresql",
    }


def print_table(summary: dict[str, Any]) -> None:
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.0f}"

    def verdict(p95: float | None, target: float) -> str:
        return "n/a" if p95 is None else ("PASS" if p95 <= target else "FAIL")

    print(f"call set-up on loopback: {summary['measured_calls']} measured calls "
          f"(+{summary['warmup_calls']} warm-up), {summary['failed']} failed; "
          f"load average {summary['loadavg_1m']} on {summary['cpus']} CPUs")
    print(f"{'from the client accept to':<44}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'target':>9}  result")
    print(f"{'both peer-to-peer connections connected':<44}{cell(summary['p2p_connected_p50_ms']):>9}"
          f"{cell(summary['p2p_connected_p95_ms']):>9}{cell(summary['p2p_connected_max_ms']):>9}"
          f"{'<=' + str(TARGET_P2P_P95_MS):>9}  {verdict(summary['p2p_connected_p95_ms'], TARGET_P2P_P95_MS)}")
    print(f"{'first audio frame at the server (each)':<44}{cell(summary['server_first_audio_p50_ms']):>9}"
          f"{cell(summary['server_first_audio_p95_ms']):>9}{cell(summary['server_first_audio_max_ms']):>9}"
          f"{'<=' + str(TARGET_SERVER_AUDIO_P95_MS):>9}  {verdict(summary['server_first_audio_p95_ms'], TARGET_SERVER_AUDIO_P95_MS)}")
    print()
    print(f"{'where the time goes (ms after the accept; dur = duration)':<58}{'p50':>8}{'p95':>8}{'max':>8}")
    for key, label in SUMMARY_PHASES:
        row = summary["breakdown_ms"].get(key)
        if row:
            print(f"{label:<58}{cell(row['p50']):>8}{cell(row['p95']):>8}{cell(row['max']):>8}")
    if summary["setup_error"]:
        print(f"\nSET-UP ERROR: {summary['setup_error']}")
    if summary.get("cleanup_error"):
        print(f"\nCLEAN-UP ERROR: {summary['cleanup_error']}")
    for failure in summary["failures"]:
        print(f"FAILED call {failure['call']}{' (warm-up)' if failure['warmup'] else ''}: {failure['error']}")
    print(flush=True)


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    from core.logging import configure_logging

    configure_logging("warning", json=False, stream=sys.stderr)
    use_host_addresses(["127.0.0.1"])
    # The web client builds its peer connections with the join ack's `ice_servers` (none on this loopback set-up);
    # aiortc's RTCPeerConnection() without a configuration would use Google's public STUN server instead.
    RTCIceGatherer.getDefaultIceServers = classmethod(lambda cls: [])  # type: ignore[method-assign]

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="call_setup_"))
    results: list[CallResult] = []
    setup_error: str | None = None
    cleanup_error: str | None = None
    server: Server | None = None
    dashboard: socketio.AsyncClient | None = None
    total = args.warmup + args.calls
    db_context = database(args.database_url, workdir)
    try:
        server = await start_server(workdir, await db_context.__aenter__())
        async with aiohttp.ClientSession() as http:
            therapist = await register_therapist(http, server)
            clients = [await register_client(http, server, n)
                       for n in range(math.ceil(total / (REQUESTS_PER_CLIENT - 1)))]
        dashboard = socketio.AsyncClient(reconnection=False)
        await dashboard.connect(server.url, auth={"token": therapist.token}, transports=["websocket"], wait_timeout=10)
        await ok(dashboard, "pool.set_availability", {"available": True}, "therapist")
        log(f"server {server.url}; {len(clients)} clients; {args.warmup} warm-up + {args.calls} calls")
        for i in range(total):
            warm = i < args.warmup
            client = clients[i // (REQUESTS_PER_CLIENT - 1)]
            result = await one_call(i + 1, warm, server, therapist, client, dashboard, args.join == "staggered")
            results.append(result)
            if result.failed:
                log(f"call {i + 1}: FAILED: {result.error}")
            else:
                log(f"call {i + 1}{' (warm-up)' if warm else ''}: p2p {ms(result.p2p_s)} ms, server first audio "
                    + ", ".join(f"{k} {ms(v)} ms" for k, v in sorted(result.first_audio_s.items())))
    except Exception as exc:  # noqa: BLE001 - reported in the summary
        setup_error = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
    finally:
        if dashboard is not None and dashboard.connected:
            with contextlib.suppress(Exception):
                await dashboard.disconnect()
        if server is not None:
            cleanup_error = await stop_server(server)
        try:
            await db_context.__aexit__(None, None, None)
        except Exception as exc:  # noqa: BLE001 - includes "never entered" when the database could not be made
            if setup_error is None and server is not None:
                cleanup_error = cleanup_error or f"dropping the database failed: {type(exc).__name__}: {exc}"
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarise(results, setup_error, args, time.monotonic() - started)
    summary["cleanup_error"] = cleanup_error
    print_table(summary)
    print(json.dumps(summary), flush=True)
    return 1 if setup_error or cleanup_error or summary["failed"] or len(results) < total else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="measured calls (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls first (default 1)")
    parser.add_argument("--join", choices=("together", "staggered"), default="together",
                        help="together (default): both members join as soon as call.ready arrives, as the browsers "
                             "do; staggered: the client joins only once the therapist's join is acknowledged")
    parser.add_argument("--database-url", default="sqlite",
                        help="sqlite (default: a file in a temporary folder) or a PostgreSQL URL, on whose server a "
                             "fresh database is created and dropped afterwards")
    parser.add_argument("--quick", action="store_true", help="3 calls (for the test suite)")
    args = parser.parse_args()
    if args.quick:
        args.calls = 3
    if args.calls < 1 or args.warmup < 0:
        parser.error("--calls must be at least 1 and --warmup at least 0")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
