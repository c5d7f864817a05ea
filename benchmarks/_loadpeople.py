"""The load test's simulated people: a browser tab (`Person`: a Socket.IO connection with the web client's handlers
and its `session.ping` probe) and a call between two of them (`SimCall`: the WebRTC relay, the audio links to the
server, the conversation, chat and notes traffic, transcript matching, the hang-up). `benchmarks._loadworker` runs
them and keeps the figures (`Stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks._loadworker import Worker

REASON = "I have been struggling with anxiety this week and would like to talk to someone today."
CHAT_TEXT = "Thank you, that helps. Could we talk a bit more about what happens at night?"
NOTES_TEXT = "Client reports improved sleep; discussed breathing exercises and a plan for the week."
CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"
ACK_TIMEOUT_S = 10.0
#: race outcomes that are the race working as designed, not errors; `call.media_state` to a server that does not
#: know the event yet (billing meters the media time only where it does)
BENIGN = {"pool.accept": {"taken"}, "call.hangup": {"call_ended"}, "call.media_state": {"unknown_event"}}
HANGUP_ATTEMPTS = 4


def now() -> float:
    return time.monotonic()


def wall(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


class Stats:
    """Samples, each with the monotonic time it belongs to; `Worker.collect` hands them over by window."""

    def __init__(self) -> None:
        self.pings: list[tuple[float, float]] = []        # (sent at, round trip s)
        self.lags: list[tuple[float, float]] = []         # (tick at, lag s)
        self.notes: list[tuple[float, float]] = []        # (sent at, ack s)
        self.relays: list[tuple[float, float]] = []       # (offer sent at, offer -> answer back at the offerer, s)
        self.setups: list[dict[str, Any]] = []
        self.errors: Counter[str] = Counter()
        self.races = Counter()


@dataclass
class ChatRecord:
    ref: str
    sent_at: float
    to: "Person"
    delivered_at: float | None = None
    acked: bool | None = None


# ---------------------------------------------------------------- one simulated person


class Person:
    """One browser tab: a Socket.IO connection with the handlers the web client has."""

    def __init__(self, worker: "Worker", account: dict[str, Any], role: str, url: str) -> None:
        import socketio

        self.worker, self.account, self.role, self.url = worker, account, role, url
        self.id = int(account["id"])
        self.sio = socketio.AsyncClient(reconnection=False, request_timeout=30)
        self.connected = False
        self.counted = False          # in the worker's count of open connections
        self.closing = False
        self.call: SimCall | None = None
        self._seen: dict[tuple[str, Any], tuple[float, Any]] = {}
        self._waiting: dict[tuple[str, Any], asyncio.Future[tuple[float, Any]]] = {}
        self._ping_task: asyncio.Task[None] | None = None
        sio = self.sio
        sio.on("pool.request_added", self._on_card)
        sio.on("pool.request_updated", self._on_request)
        sio.on("call.ready", self._on_ready)
        sio.on("call.signal", self._on_signal)
        sio.on("call.chat", self._on_chat)
        sio.on("call.ended", self._on_ended)
        sio.on("call.transcript", self._on_transcript)
        sio.on("disconnect", self._on_disconnect)

    # ------------------------------------------------------------ waiting for pushed events

    def _arrived(self, kind: str, key: Any, data: Any) -> None:
        item = (now(), data)
        fut = self._waiting.pop((kind, key), None)
        if fut is not None and not fut.done():
            fut.set_result(item)
        else:
            if len(self._seen) > 2000:   # cards of requests this dashboard never raced for
                self._seen.clear()
            self._seen[(kind, key)] = item

    async def wait_for(self, kind: str, key: Any, timeout: float) -> tuple[float, Any] | None:
        item = self._seen.pop((kind, key), None)
        if item is not None:
            return item
        fut = self._waiting.setdefault((kind, key), asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self._waiting.pop((kind, key), None)

    def _on_card(self, data: Any = None) -> None:
        req = (data or {}).get("request") or {}
        if "id" in req:
            self._arrived("card", int(req["id"]), req)

    def _on_request(self, data: Any = None) -> None:
        req = (data or {}).get("request") or {}
        if req.get("status") == "offered" and "id" in req:
            self._arrived("offer", int(req["id"]), req)

    def _on_ready(self, data: Any = None) -> None:
        call = (data or {}).get("call") or {}
        if "id" in call:
            self._arrived("ready", int(call["id"]), call)

    async def _on_signal(self, data: Any = None) -> None:
        if self.call is not None and isinstance(data, dict):
            await self.call.on_signal(self, data)

    def _on_chat(self, data: Any = None) -> None:
        msg = (data or {}).get("message") or {}
        rec = self.worker.chats_by_ref.get(str(msg.get("client_ref")))
        if rec is not None and rec.to is self and rec.delivered_at is None:
            rec.delivered_at = now()

    def _on_ended(self, data: Any = None) -> None:
        call_id = (data or {}).get("call_id")
        if call_id is not None:
            self._arrived("ended", int(call_id), data)

    def _on_transcript(self, data: Any = None) -> None:
        seg = (data or {}).get("segment") or {}
        call = self.worker.calls_by_id.get(int(seg.get("call_id", 0) or 0))
        if call is not None:
            call.on_transcript(seg, now())

    def _on_disconnect(self, *args: Any) -> None:
        was = self.connected
        self.connected = False
        if was and not self.closing:
            self.worker.stats.errors["disconnected_by_server"] += 1
        if self.counted and not self.closing:
            self.worker.connections -= 1
            self.counted = False

    # ------------------------------------------------------------ acting

    async def connect(self) -> bool:
        try:
            await self.sio.connect(self.url, auth={"token": self.account["token"]}, transports=["websocket"],
                                   wait_timeout=30)
        except Exception as exc:  # noqa: BLE001 - counted by kind
            self.worker.stats.errors[f"connect:{type(exc).__name__}"] += 1
            return False
        self.connected = True
        self.counted = True
        self.worker.connections += 1
        if self.worker.cfg["ping_interval"] > 0:
            self._ping_task = asyncio.get_running_loop().create_task(self._pings())
        return True

    async def emit(self, event: str, data: dict[str, Any], timeout: float = ACK_TIMEOUT_S) -> dict[str, Any] | None:
        """The ack, or None (timed out, or the connection failed); error codes are counted unless benign."""
        try:
            ack = await self.sio.call(event, data, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - socketio.exceptions.TimeoutError, BadNamespaceError, ...
            kind = "timeout" if "Timeout" in type(exc).__name__ else type(exc).__name__
            self.worker.stats.errors[f"{event}:{kind}"] += 1
            return None
        if not isinstance(ack, dict):
            self.worker.stats.errors[f"{event}:bad_ack"] += 1
            return None
        if not ack.get("ok"):
            code = str((ack.get("error") or {}).get("code", "error"))
            if code not in BENIGN.get(event, ()):
                self.worker.stats.errors[f"{event}:{code}"] += 1
        return ack

    async def _pings(self) -> None:
        interval = self.worker.cfg["ping_interval"]
        await asyncio.sleep(self.worker.rng.uniform(0, interval))
        while self.connected and not self.closing:
            sent = now()
            ack = await self.emit("session.ping", {})
            if ack is not None and ack.get("ok"):
                self.worker.stats.pings.append((sent, now() - sent))
            await asyncio.sleep(max(0.0, interval - (now() - sent)))

    async def close(self) -> None:
        self.closing = True
        if self._ping_task is not None:
            self._ping_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping_task
        if self.sio.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sio.disconnect(), 5)
        if self.counted:
            self.worker.connections -= 1
            self.counted = False
        self.connected = False


# ---------------------------------------------------------------- one simulated call


class SimCall:
    def __init__(self, worker: "Worker", key: str, client: Person) -> None:
        self.worker, self.key, self.client = worker, key, client
        self.therapist: Person | None = None
        self.call_id: int | None = None
        self.state = "setting_up"       # -> connected | failed -> ended
        self.created_at: float | None = None      # wall clock (the server's call.created_at)
        self.started_at: float | None = None
        self.offerer: Person | None = None
        self.answered = asyncio.Event()           # the offerer has the answer
        self.offer_received = asyncio.Event()     # the answerer has the offer
        self.offer_sent_at: float | None = None
        self.links: dict[str, Any] = {}           # role -> RTCPeerConnection to the server
        self.tracks: dict[str, Any] = {}          # role -> TalkTrack
        self.link_offer: dict[str, tuple[float, float]] = {}   # role -> (wall time sent, wall time acked)
        self.p2p: dict[str, Any] = {}
        self.p2p_received: dict[str, Any] = {}
        self.utterances: dict[str, list[Any]] = {"client": [], "therapist": []}
        self.tasks: list[asyncio.Task[None]] = []
        self.ended_by_server = False
        self.media_reported: set[str] = set()     # roles that told the server their peer connection is connected

    def member(self, role: str) -> Person:
        person = self.client if role == "client" else self.therapist
        assert person is not None
        return person

    def other(self, person: Person) -> Person:
        return self.client if person is self.therapist else self.member("therapist")

    # ------------------------------------------------------------ signalling relay

    async def on_signal(self, person: Person, data: dict[str, Any]) -> None:
        kind = data.get("kind")
        cfg = self.worker.cfg
        if kind == "offer":
            self.offer_received.set()
            if cfg["p2p"]:
                await self._p2p_answer(person, str(data.get("sdp", "")))
            else:
                await person.emit("call.signal", {"call_id": self.call_id, "kind": "answer",
                                                  "sdp": self.worker.canned["answer"]})
                await self._trickle(person)
                await self.report_media_connected(person)
        elif kind == "answer" and person is self.offerer:
            if self.offer_sent_at is not None:
                self.worker.stats.relays.append((self.offer_sent_at, now() - self.offer_sent_at))
            if cfg["p2p"]:
                from aiortc import RTCSessionDescription

                pc = self.p2p.get(person.role)
                if pc is not None:
                    with contextlib.suppress(Exception):
                        await pc.setRemoteDescription(RTCSessionDescription(sdp=str(data.get("sdp", "")),
                                                                            type="answer"))
            self.answered.set()
            if not cfg["p2p"]:
                await self.report_media_connected(person)

    async def report_media_connected(self, person: Person) -> None:
        """What a browser sends once its peer connection to the other member is connected (`call.media_state`;
        billing meters a call while both members report connected). Without `--p2p` there is no real connection:
        the description exchange done (answer sent, or received) stands for it; with `--p2p`, the connection."""
        if person.role in self.media_reported or self.call_id is None:
            return
        self.media_reported.add(person.role)
        await person.emit("call.media_state", {"call_id": self.call_id, "connected": True})

    async def _trickle(self, person: Person) -> None:
        """What a browser sends after its description: a loopback host candidate, then the end of candidates."""
        port = 50000 + self.worker.rng.randrange(10000)
        await person.emit("call.signal", {"call_id": self.call_id, "kind": "candidate", "candidate": {
            "candidate": CANDIDATE.format(port=port), "sdpMid": "0", "sdpMLineIndex": 0}})
        await person.emit("call.signal", {"call_id": self.call_id, "kind": "candidate", "candidate": None})

    async def make_offer(self, person: Person) -> None:
        self.offerer = person
        if self.worker.cfg["p2p"]:
            pc = self._new_p2p(person)
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
        else:
            sdp = self.worker.canned["offer"]
        self.offer_sent_at = now()
        await person.emit("call.signal", {"call_id": self.call_id, "kind": "offer", "sdp": sdp})
        if not self.worker.cfg["p2p"]:
            await self._trickle(person)

    def _new_p2p(self, person: Person) -> Any:
        from aiortc import RTCPeerConnection

        from benchmarks._loadaudio import MirrorTrack
        from benchmarks._peers import FrameCounter

        pc = RTCPeerConnection()
        pc.addTrack(MirrorTrack(self.tracks[person.role]))
        counter = FrameCounter()
        self.p2p_received[person.role] = counter
        pc.on("track", counter.attach)
        self.p2p[person.role] = pc
        return pc

    async def _p2p_answer(self, person: Person, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        try:
            pc = self._new_p2p(person)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await person.emit("call.signal", {"call_id": self.call_id, "kind": "answer",
                                              "sdp": pc.localDescription.sdp})
        except Exception as exc:  # noqa: BLE001 - counted
            self.worker.stats.errors[f"p2p:{type(exc).__name__}"] += 1

    # ------------------------------------------------------------ the audio link to the server

    async def open_link(self, person: Person) -> bool:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from benchmarks._loadaudio import TalkTrack

        track = TalkTrack(self.worker.bank, self.worker.frame_clock)
        self.tracks[person.role] = track
        pc = RTCPeerConnection()
        pc.addTrack(track)
        connected = asyncio.get_running_loop().create_future()

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("connected", "failed", "closed") and not connected.done():
                connected.set_result(pc.connectionState)

        self.links[person.role] = pc
        await pc.setLocalDescription(await pc.createOffer())
        sent = time.time()
        ack = await person.emit("call.media.offer", {"call_id": self.call_id, "sdp": pc.localDescription.sdp})
        self.link_offer[person.role] = (sent, time.time())
        if ack is None or not ack.get("ok"):
            return False
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
        try:
            state = await asyncio.wait_for(connected, self.worker.cfg["setup_timeout"])
        except asyncio.TimeoutError:
            self.worker.stats.errors["media_link:timeout"] += 1
            return False
        if state != "connected":
            self.worker.stats.errors[f"media_link:{state}"] += 1
            return False
        return True

    async def _p2p_connected(self) -> bool:
        deadline = now() + self.worker.cfg["setup_timeout"]
        while now() < deadline:
            states = [pc.connectionState for pc in self.p2p.values()]
            if len(states) == 2 and all(s == "connected" for s in states):
                return True
            if any(s in ("failed", "closed") for s in states):
                break
            await asyncio.sleep(0.02)
        self.worker.stats.errors["p2p:not_connected"] += 1
        return False

    # ------------------------------------------------------------ transcripts

    def offset_ms(self, role: str) -> float:
        """The server's `offset_ms` for this member's stream: call time (from `started_at`, else `created_at`) when
        it handled the media offer, estimated from when the offer was sent and acknowledged."""
        sent, acked = self.link_offer.get(role, (0.0, 0.0))
        since = self.created_at or 0.0
        if self.started_at is not None and acked >= self.started_at:
            since = self.started_at
        return max(0.0, (sent - since) * 1000)

    def on_transcript(self, seg: dict[str, Any], at: float) -> None:
        """Give the segment to the utterance of its speaker whose region holds the segment's middle (regions are
        split half-way through the silence between two of that speaker's utterances)."""
        utts = [u for u in self.utterances.get(str(seg.get("speaker")), []) if u.start_frame >= 0]
        if not utts:
            self.worker.stats.errors["transcript:unmatched"] += 1
            return
        mid = (float(seg.get("start_ms", 0)) + float(seg.get("end_ms", 0))) / 2 - self.offset_ms(str(seg["speaker"]))
        chosen = utts[-1]
        for a, b in zip(utts, utts[1:]):
            if mid < (a.end_ms + b.start_ms) / 2:
                chosen = a
                break
        chosen.arrivals.append(at)

    # ------------------------------------------------------------ during the call

    async def converse(self) -> None:
        from benchmarks._loadaudio import Utterance

        cfg, rng = self.worker.cfg, random.Random(f"{self.worker.cfg['seed']}-{self.key}")
        speaker = rng.choice(["client", "therapist"])
        await asyncio.sleep(rng.uniform(*cfg["pause"]))
        while self.state == "connected":
            utt = Utterance(rng.choice(self.worker.bank.clips), speaker)
            self.utterances[speaker].append(utt)
            await self.tracks[speaker].say(utt)
            await asyncio.sleep(rng.uniform(*cfg["pause"]))
            speaker = "client" if speaker == "therapist" else "therapist"

    async def chat(self, person: Person) -> None:
        interval = self.worker.cfg["chat_interval"]
        await asyncio.sleep(self.worker.rng.uniform(0, interval))
        n = 0
        while self.state == "connected":
            n += 1
            ref = f"{self.key}-{self.call_id}-{person.role[0]}{n}"
            rec = ChatRecord(ref, now(), self.other(person))
            self.worker.chats.append(rec)
            self.worker.chats_by_ref[ref] = rec
            ack = await person.emit("call.chat", {"call_id": self.call_id, "text": CHAT_TEXT, "client_ref": ref})
            rec.acked = bool(ack and ack.get("ok"))
            await asyncio.sleep(max(0.0, interval - (now() - rec.sent_at)))

    async def notes(self, person: Person) -> None:
        interval = self.worker.cfg["notes_interval"]
        await asyncio.sleep(self.worker.rng.uniform(0, interval))
        version = 0
        while self.state == "connected":
            sent = now()
            ack = await person.emit("call.notes.save", {"call_id": self.call_id, "text": NOTES_TEXT,
                                                        "base_version": version})
            if ack is not None and ack.get("ok"):
                version = int(ack.get("version", version))
                self.worker.stats.notes.append((sent, now() - sent))
            elif ack is not None and (ack.get("error") or {}).get("code") == "stale_notes":
                # saved elsewhere meanwhile (here: an earlier save whose ack timed out): reload, as the web client does
                fresh = await person.emit("call.notes.get", {"call_id": self.call_id})
                if fresh is not None and fresh.get("ok"):
                    version = int(fresh.get("version", version))
            await asyncio.sleep(max(0.0, interval - (now() - sent)))

    def start_activity(self) -> None:
        cfg, loop = self.worker.cfg, asyncio.get_running_loop()
        therapist = self.member("therapist")
        if cfg["chat_interval"] > 0:
            self.tasks += [loop.create_task(self.chat(self.client)), loop.create_task(self.chat(therapist))]
        if cfg["notes_interval"] > 0:
            self.tasks.append(loop.create_task(self.notes(therapist)))
        if self.tracks:
            self.tasks.append(loop.create_task(self.converse()))

    async def end(self) -> None:
        """Hang up (the therapist), wait until both members are told, close the peers."""
        if self.state == "ended":
            return
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
        worker = self.worker
        if self.call_id is not None:
            ok = False
            for attempt in range(HANGUP_ATTEMPTS):   # an overloaded server may time out: try again, either member
                order = [p for p in (self.therapist, self.client) if p is not None and p.connected]
                if not order:
                    break
                who = order[attempt % len(order)]
                ack = await who.emit("call.hangup", {"call_id": self.call_id})
                ok = ack is not None and (ack.get("ok") or (ack.get("error") or {}).get("code") == "call_ended")
                if ok:
                    break
                await asyncio.sleep(2.0 * (attempt + 1))
            members = [p for p in (self.client, self.therapist) if p is not None and p.connected]
            told = await asyncio.gather(*(p.wait_for("ended", self.call_id, worker.cfg["setup_timeout"])
                                          for p in members))
            if ok or any(told):
                worker.calls_ended += 1
                if not all(told):
                    worker.stats.errors["call.ended:not_received"] += 1
            else:
                worker.stats.errors["hangup:failed"] += 1
        await self.close_media()
        for p in (self.client, self.therapist):
            if p is not None and p.call is self:
                p.call = None
        self.state = "ended"

    async def close_media(self) -> None:
        for pc in list(self.links.values()):
            await self.worker.fold_link_stats(pc)
        for track in self.tracks.values():
            track.stop()
        for counter in self.p2p_received.values():
            self.worker.p2p_received += sum(counter.frames.values())
            await counter.close()
        self.p2p_received.clear()
        for pc in list(self.links.values()) + list(self.p2p.values()):
            with contextlib.suppress(Exception):
                await pc.close()
        for pc in self.p2p.values():
            for sender in pc.getSenders():
                if sender.track is not None:
                    self.worker.p2p_sent += getattr(sender.track, "sent", 0)
        self.links.clear()
        self.p2p.clear()
