"""A load-test worker process: simulated people (python-socketio clients, aiortc peers) in one asyncio loop.

`python -m benchmarks._loadworker` reads one JSON command per line on stdin and answers one JSON line on stdout (the
real stdout; anything else printed goes to stderr), like `benchmarks._loadclients`. The coordinator
(`benchmarks.loadtest`) starts several and spreads the calls over them: one Python process keeps only ~15-20 aiortc
senders in real time, or a few hundred Socket.IO connections with their probes.

Commands (each answered with `{"id": ..., "ok": true, ...}`):
- `init`: the run's settings (mode, server URLs, rates, thresholds) and, for media, the encoded speech bank's path;
- `add_calls`: therapist accounts to draw racers from and calls to start (a client account each), one set-up every
  `interval` seconds; answered when every one of them is connected or has failed;
- `mark`: the start of a measurement window (frame counters are read);
- `collect`: the samples of the window `[since, until]` (see `Worker.collect`), and the set-ups, errors and
  generator figures since the previous `collect`;
- `status`: a few counters for the progress bar;
- `stop`: end every call (hang-up, both members told), check each ended on the server, close every connection;
  answers the run's bookkeeping;
- `quit`.

Every time is `time.monotonic()` (CLOCK_MONOTONIC on Linux: one clock for every process of the machine), so the
coordinator compares times taken here with its own.

A simulated call, as the browsers do it (PROTOCOL.md, 6. Flows): the client connects and sends `pool.request`;
`racers` idle, available therapists (dashboards) wait for the `pool.request_added` card and each send `pool.accept`;
the client waits for the offer (`pool.request_updated`, status `offered`) and answers `pool.respond` (accept, terms,
recording consent in the media modes); on `call.ready` both send `call.join`; the member who found the other present
makes the WebRTC offer through `call.signal` (canned SDPs from a real aiortc pair, plus one trickled loopback
candidate and the end of candidates each way, unless `p2p` makes it a real peer-to-peer connection), and each member
reports its peer connection connected (`call.media_state`, as a browser does; billing meters the call from then on);
in the media modes each member also opens its audio-only link to the server (`call.media.offer`). Then, until the hang-up:
a `session.ping` every `ping_interval` seconds on every connection, a `call.chat` from each member every
`chat_interval`, a `call.notes.save` from the therapist every `notes_interval`, and, in the media modes, a
conversation: one member says a clip, a pause of `pause` seconds, then the other, and so on. The winner goes
unavailable once in the call (back to available after it); the losers of a race stay idle for the next one.

`LOADTEST_SLOW_CALLBACKS=0.03` in the environment runs the worker on asyncio's own loop in debug mode, logging (to the
worker's log) every callback that held the loop longer: how to find what makes a generator lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._loadclients import serve_commands
from benchmarks._loadpeople import REASON, ChatRecord, Person, SimCall, Stats, now, wall

TICK_S = 0.05                 # the loop-lag ticker
HANGUPS_AT_ONCE = 25          # per worker, when the run ends


# ---------------------------------------------------------------- the worker


class Worker:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.cfg: dict[str, Any] = {}
        self.stats = Stats()
        self.rng = random.Random(0)
        self.bank: Any = None
        self.frame_clock: Any = None
        self.canned: dict[str, str] = {}
        self.idle: list[Person] = []            # connected, available therapists not in a call or a race
        self.idle_changed = asyncio.Event()
        self.spare_accounts: list[dict[str, Any]] = []
        self.therapists: list[Person] = []
        self.clients: dict[int, Person] = {}
        self.calls: list[SimCall] = []
        self.calls_by_id: dict[int, SimCall] = {}
        self.chats: list[ChatRecord] = []
        self.chats_by_ref: dict[str, ChatRecord] = {}
        self.chat_totals = {"sent": 0, "acked": 0, "delivered": 0}   # messages already handed over and dropped
        self.connections = 0
        self.url_turn = 0
        self.calls_started = 0      # calls the server opened (pool.respond accepted)
        self.calls_connected = 0
        self.calls_failed = 0       # set-ups that failed, whether or not a call was opened
        self.calls_ended = 0
        self.requests = 0
        self.requests_cancelled = 0
        self.requests_refused = 0   # pool.request not acknowledged: no request was made
        self.requests_stranded = 0  # neither accepted nor cancelled (the cancel failed too)
        self.setups_in_flight = 0
        self.stopping = False
        self.link_totals = {"sent": 0, "lost": 0}   # RTCP figures of closed server links
        self.p2p_sent = 0
        self.p2p_received = 0
        self.mark_figures: dict[str, Any] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._churn: set[asyncio.Task[None]] = set()
        self._cpu_mark = (time.process_time(), now())

    def reply(self, msg: dict[str, Any]) -> None:
        self.out.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        self.out.flush()

    def next_url(self) -> str:
        urls = self.cfg["urls"]
        self.url_turn += 1
        return urls[(self.url_turn + self.cfg["index"]) % len(urls)]

    # ------------------------------------------------------------ commands

    async def init(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.cfg = cmd["config"]
        self.rng = random.Random(f"{self.cfg['seed']}-{self.cfg['index']}")
        import aiohttp  # noqa: F401 - imported now, not by the first person inside a measured ramp (~0.4 s)
        import socketio  # noqa: F401
        from aiortc import RTCPeerConnection

        import benchmarks._peers  # noqa: F401 - FrameCounter, for --p2p
        from aiortc.rtcicetransport import RTCIceGatherer

        from benchmarks._loadaudio import FrameClock, SpeechBank
        from media.addresses import use_host_addresses

        # Loopback only, and no public STUN server (the join ack's ice_servers are empty on loopback).
        use_host_addresses(["127.0.0.1"])
        RTCIceGatherer.getDefaultIceServers = classmethod(lambda cls: [])  # type: ignore[method-assign]
        if self.cfg.get("bank"):
            self.bank = SpeechBank.load(Path(self.cfg["bank"]))
        self.frame_clock = FrameClock(self.cfg["late_frame_s"])
        # canned descriptions for the relay when no real peer-to-peer connection is made; in the media modes the
        # pair also connects (ICE, DTLS, SRTP) and carries a second of audio, so that the first calls of the run do
        # not pay for loading and initialising all of that inside a measured step
        a, b = RTCPeerConnection(), RTCPeerConnection()
        try:
            if self.bank is not None:
                from benchmarks._loadaudio import TalkTrack

                a.addTrack(TalkTrack(self.bank, None))
            else:
                a.addTransceiver("audio", direction="sendrecv")
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            self.canned = {"offer": a.localDescription.sdp, "answer": b.localDescription.sdp}
            if self.bank is not None:
                await a.setRemoteDescription(b.localDescription)
                deadline = now() + 10
                while a.connectionState != "connected" and now() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)
        finally:
            await a.close()
            await b.close()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return {"pid": os.getpid()}

    async def _tick(self) -> None:
        while True:
            t0 = now()
            await asyncio.sleep(TICK_S)
            t1 = now()
            self.stats.lags.append((t1, max(0.0, t1 - t0 - TICK_S)))

    async def add_calls(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.spare_accounts += cmd.get("therapists", [])
        interval = float(cmd.get("interval", 0.0))
        gate = asyncio.Semaphore(int(self.cfg["setup_in_flight"]))
        tasks = []
        for n, spec in enumerate(cmd["calls"]):
            if self.stopping:
                break
            client = self.clients.get(int(spec["client"]["id"]))
            if client is None:
                client = Person(self, spec["client"], "client", self.next_url())
                self.clients[client.id] = client
            call = SimCall(self, spec["key"], client)
            self.calls.append(call)
            tasks.append(asyncio.get_running_loop().create_task(self._setup_gated(call, gate)))
            if interval > 0 and n + 1 < len(cmd["calls"]):
                await asyncio.sleep(interval)
        results = await asyncio.gather(*tasks)
        return {"connected": sum(1 for r in results if r), "failed": sum(1 for r in results if not r)}

    async def _setup_gated(self, call: SimCall, gate: asyncio.Semaphore) -> bool:
        async with gate:
            return await self.setup(call)

    async def _take_racers(self, count: int) -> list[Person]:
        """`count` idle, available therapists (fewer when no more accounts are left), connected on demand."""
        while len(self.idle) < count and self.spare_accounts:
            account = self.spare_accounts.pop(0)
            person = Person(self, account, "therapist", self.next_url())
            self.therapists.append(person)
            if await person.connect():
                ack = await person.emit("pool.set_availability", {"available": True})
                if ack is not None and ack.get("ok"):
                    self.idle.append(person)
        deadline = now() + self.cfg["setup_timeout"]
        while not self.idle and now() < deadline:   # every therapist is racing: wait for a loser to come back
            self.idle_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.idle_changed.wait(), max(0.01, deadline - now()))
        racers, self.idle = self.idle[:count], self.idle[count:]
        return racers

    def _idle_again(self, therapists: list[Person]) -> None:
        self.idle += [t for t in therapists if t.connected and t not in self.idle]
        self.idle_changed.set()

    async def setup(self, call: SimCall) -> bool:
        """One call set up as the browsers do it; True once connected. Records the set-up's figures."""
        self.setups_in_flight += 1
        rec: dict[str, Any] = {"key": call.key, "t": now(), "ok": False}
        try:
            ok = await self._setup(call, rec)
        except Exception as exc:  # noqa: BLE001 - a broken set-up is a failed call, never a dead worker
            self.stats.errors[f"setup:{type(exc).__name__}"] += 1
            rec["error"] = f"{type(exc).__name__}: {exc}"
            ok = False
        finally:
            self.setups_in_flight -= 1
        rec["ok"] = ok
        rec["done"] = now()
        self.stats.setups.append(rec)
        if ok:
            call.state = "connected"
            self.calls_connected += 1
            call.start_activity()
            therapist = call.member("therapist")
            await therapist.emit("pool.set_availability", {"available": False})
            if self.cfg["call_seconds"] > 0:
                task = asyncio.get_running_loop().create_task(self._churn_after(call))
                self._churn.add(task)
                task.add_done_callback(self._churn.discard)
        else:
            call.state = "failed"
            self.calls_failed += 1
            if rec.get("error") is None:
                rec["error"] = rec.get("stage", "failed")
            await call.end()
            if call.therapist is not None:
                self._back_to_idle(call.therapist)
        return ok

    async def _setup(self, call: SimCall, rec: dict[str, Any]) -> bool:
        cfg = self.cfg
        timeout = cfg["setup_timeout"]
        client = call.client
        rec["stage"] = "connect"
        if not client.connected and not await client.connect():
            return False
        client.call = call
        racers = await self._take_racers(cfg["racers"])
        if not racers:
            self.stats.errors["setup:no_therapist"] += 1
            return False
        rec["stage"] = "request"
        t_req = now()
        ack = await client.emit("pool.request", {"reason": REASON})
        self.requests += 1
        if ack is None or not ack.get("ok"):
            self.requests_refused += 1
            self._idle_again(racers)
            return False
        request_id = int(ack["request"]["id"])

        async def race(t: Person) -> tuple[Person, dict[str, Any] | None]:
            if await t.wait_for("card", request_id, timeout) is None:
                self.stats.errors["pool.request_added:not_received"] += 1
            return t, await t.emit("pool.accept", {"request_id": request_id})

        rec["stage"] = "race"
        results = await asyncio.gather(*(race(t) for t in racers))
        winners = [t for t, a in results if a is not None and a.get("ok")]
        self.stats.races["requests"] += 1
        self.stats.races[f"winners_{len(winners)}"] += 1
        self.stats.races["racers"] += len(racers)
        self._idle_again([t for t in racers if t not in winners[:1]])
        if len(winners) != 1:
            if len(winners) > 1:
                self.stats.errors["race:several_winners"] += 1
            await self._cancel(client, request_id)
            return False
        therapist = winners[0]
        call.therapist = therapist
        therapist.call = call
        rec["stage"] = "offer"
        offered = await client.wait_for("offer", request_id, timeout)
        if offered is None:
            self.stats.errors["pool.request_updated:offer_not_received"] += 1
            await self._cancel(client, request_id)
            self._back_to_idle(therapist)
            return False
        rec["request_to_accept"] = offered[0] - t_req
        rec["stage"] = "respond"
        t_acc = now()
        ack = await client.emit("pool.respond", {
            "request_id": request_id, "accept": True, "accept_terms": True,
            "terms_version": (offered[1].get("offer") or {}).get("terms_version", ""),
            "recording_consent": cfg["mode"] != "signalling"})
        if ack is None or not ack.get("ok"):
            await self._cancel(client, request_id)
            self._back_to_idle(therapist)
            return False
        summary = ack["call"]
        call.call_id = int(summary["id"])
        call.created_at = wall(summary.get("created_at"))
        self.calls_by_id[call.call_id] = call
        self.calls_started += 1
        rec["stage"] = "join"
        joined = await asyncio.gather(self._join(call, client), self._join(call, therapist))
        if not all(j is not None for j in joined):
            return False
        c_ack, t_ack = joined
        for a in joined:
            started = wall((a or {}).get("call", {}).get("started_at"))
            if started is not None:
                call.started_at = started
        # the member who found the other present offers; when both did, the impolite therapist's offer wins
        offerer = client if c_ack.get("peer_present") and not t_ack.get("peer_present") else therapist
        if not c_ack.get("peer_present") and not t_ack.get("peer_present"):
            self.stats.errors["call.join:nobody_present"] += 1
        rec["stage"] = "connect"

        async def relay() -> bool:
            await call.make_offer(offerer)
            try:
                await asyncio.wait_for(asyncio.gather(call.answered.wait(), call.offer_received.wait()), timeout)
            except asyncio.TimeoutError:
                self.stats.errors["call.signal:answer_not_received"] += 1
                return False
            return True

        # as the web client: once joined, the server link (media modes) in parallel with the peer-to-peer offer
        steps: list[Any] = [call.open_link(client), call.open_link(therapist)] if cfg["mode"] != "signalling" else []
        if not all(await asyncio.gather(*steps, relay())):
            return False
        if cfg["p2p"]:
            if not await call._p2p_connected():  # noqa: SLF001
                return False
            await asyncio.gather(*(call.report_media_connected(p) for p in (client, therapist)))
        rec["accept_to_connected"] = now() - t_acc
        rec["stage"] = "connected"
        return True

    async def _join(self, call: SimCall, person: Person) -> dict[str, Any] | None:
        ready = await person.wait_for("ready", call.call_id, self.cfg["setup_timeout"])
        if ready is None:
            self.stats.errors["call.ready:not_received"] += 1
        ack = await person.emit("call.join", {"call_id": call.call_id})
        return ack if ack is not None and ack.get("ok") else None

    async def _cancel(self, client: Person, request_id: int) -> None:
        ack = await client.emit("pool.cancel", {"request_id": request_id})
        if ack is not None and ack.get("ok"):
            self.requests_cancelled += 1
        else:
            self.requests_stranded += 1

    def _back_to_idle(self, therapist: Person) -> None:
        therapist.call = None
        self._idle_again([therapist])

    async def _churn_after(self, call: SimCall) -> None:
        """A call that lasts `call_seconds` (+-20 %), then is replaced by a new one for the same client."""
        await asyncio.sleep(self.cfg["call_seconds"] * self.rng.uniform(0.8, 1.2))
        if self.stopping or call.state != "connected":
            return
        await self._finish_chats(call)
        await call.end()
        therapist = call.therapist
        if therapist is not None and therapist.connected:
            ack = await therapist.emit("pool.set_availability", {"available": True})
            if ack is not None and ack.get("ok"):
                self._back_to_idle(therapist)
        if self.stopping:
            return
        fresh = SimCall(self, f"{call.key}+", call.client)
        self.calls.append(fresh)
        await self.setup(fresh)

    async def _finish_chats(self, call: SimCall) -> None:
        """Before a hang-up: stop sending, and give the messages in flight `chat_timeout` to arrive."""
        call.state = "ending"
        deadline = now() + self.cfg["chat_timeout"]
        pending = [r for r in self.chats if r.ref.startswith(f"{call.key}-{call.call_id}-") and r.delivered_at is None]
        while pending and now() < deadline:
            await asyncio.sleep(0.05)
            pending = [r for r in pending if r.delivered_at is None]

    # ------------------------------------------------------------ measurement

    async def link_figures(self) -> dict[str, int]:
        """Server links, all time: packets sent, and lost according to the server's RTCP receiver reports."""
        sent, lost = self.link_totals["sent"], self.link_totals["lost"]
        for call in self.calls:
            for pc in list(call.links.values()):
                s, lo = await _link_stats(pc)
                sent, lost = sent + s, lost + lo
        frames, late = self.frame_clock.snapshot() if self.frame_clock else (0, 0)
        p2p_sent = self.p2p_sent + sum(getattr(s.track, "sent", 0) for c in self.calls for pc in c.p2p.values()
                                       for s in pc.getSenders() if s.track is not None)
        p2p_received = self.p2p_received + sum(sum(fc.frames.values()) for c in self.calls
                                               for fc in c.p2p_received.values())
        return {"packets_sent": sent, "packets_lost": lost, "frames": frames, "late_frames": late,
                "p2p_sent": p2p_sent, "p2p_received": p2p_received}

    async def fold_link_stats(self, pc: Any) -> None:
        s, lo = await _link_stats(pc)
        self.link_totals["sent"] += s
        self.link_totals["lost"] += lo

    async def mark(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.mark_figures = await self.link_figures()
        self._cpu_mark = (time.process_time(), now())
        return {}

    async def collect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Samples of the window [since, until]: pings, loop lag, notes, relays; frames since `mark`; chat messages
        sent in [since - chat_grace, until - chat_grace] (delivered, or lost when not delivered by now); utterances
        whose speech ended in [since - transcript_grace, until - transcript_grace] (latency to their last segment,
        or, when none has come, the time waited so far, flagged). Plus every set-up, error and ramp-time loop lag
        since the previous collect. Older samples are dropped."""
        since, until = float(cmd["since"]), float(cmd["until"])
        ramp_since = float(cmd.get("ramp_since", since))
        t = now()
        s = self.stats

        def window(samples: list[tuple[float, float]], lo: float = since, hi: float = until) -> list[float]:
            return [round(v, 5) for at, v in samples if lo <= at <= hi]

        out: dict[str, Any] = {
            "pings": window(s.pings), "lags": window(s.lags),
            "ping_times": [[round(at - since, 2), round(v, 4)] for at, v in s.pings if since <= at <= until], "ramp_lags": window(s.lags, ramp_since, since),
            "notes": window(s.notes), "relays": window(s.relays, -1e18, until),
            "setups": s.setups, "errors": dict(s.errors), "races": dict(s.races),
        }
        s.pings = [p for p in s.pings if p[0] > until]
        s.lags = [p for p in s.lags if p[0] > until]
        s.notes = [p for p in s.notes if p[0] > until]
        s.relays = [p for p in s.relays if p[0] > until]
        s.setups, s.errors, s.races = [], Counter(), Counter()
        cg = float(cmd.get("chat_grace", 5.0))
        chats = [r for r in self.chats if since - cg <= r.sent_at < until - cg]
        out["chat"] = {"sent": len(chats), "acked": sum(1 for r in chats if r.acked),
                       "delivered": sum(1 for r in chats if r.delivered_at is not None),
                       "relay": [round(r.delivered_at - r.sent_at, 5) for r in chats if r.delivered_at is not None]}
        self._drop_chats([r for r in self.chats if r.sent_at < until - cg])
        tg = float(cmd.get("transcript_grace", 3.0))
        latencies, waiting = [], 0
        for call in self.calls:
            for utts in call.utterances.values():
                for u in utts:
                    if u.sent_end_at is not None and since - tg <= u.sent_end_at < until - tg:
                        latency, got = u.latency(t)
                        if latency is not None:
                            latencies.append(round(latency, 4))
                            waiting += 0 if got else 1
        out["transcripts"] = {"utterances": len(latencies), "untranscribed": waiting, "latency": latencies}
        figures = await self.link_figures()
        out["frames"] = {k: figures[k] - self.mark_figures.get(k, 0) for k in figures}
        cpu0, t0 = self._cpu_mark
        out["cpu_s"] = round(time.process_time() - cpu0, 4)
        out["cpu_wall_s"] = round(now() - t0, 4)
        out["active_calls"] = sum(1 for c in self.calls if c.state == "connected")
        out["connections"] = self.connections
        return out

    def _drop_chats(self, records: list[ChatRecord]) -> None:
        """Forget these messages, keeping them in the run's totals."""
        gone = {id(r) for r in records}
        self.chat_totals["sent"] += len(records)
        self.chat_totals["acked"] += sum(1 for r in records if r.acked)
        self.chat_totals["delivered"] += sum(1 for r in records if r.delivered_at is not None)
        self.chats = [r for r in self.chats if id(r) not in gone]
        self.chats_by_ref = {r.ref: r for r in self.chats}

    async def status(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"active_calls": sum(1 for c in self.calls if c.state == "connected"),
                "connections": self.connections, "in_flight": self.setups_in_flight,
                "errors": sum(self.stats.errors.values())}

    async def stop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """End everything; the run's bookkeeping. Chat messages still in flight get `chat_timeout` to arrive."""
        self.stopping = True
        for task in list(self._churn):
            task.cancel()
        for task in list(self._churn):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        while self.setups_in_flight:
            await asyncio.sleep(0.05)
        live = [c for c in self.calls if c.state == "connected"]
        for call in live:
            call.state = "ending"
            for task in call.tasks:
                task.cancel()
        deadline = now() + self.cfg["chat_timeout"]
        while any(r.delivered_at is None for r in self.chats) and now() < deadline:
            await asyncio.sleep(0.05)
        self._drop_chats(list(self.chats))
        chat = dict(self.chat_totals)
        final_frames = await self.link_figures()
        gate = asyncio.Semaphore(HANGUPS_AT_ONCE)   # a thousand hang-ups at once would be a load test of their own

        async def end(call: SimCall) -> None:
            async with gate:
                await call.end()

        await asyncio.gather(*(end(c) for c in self.calls if c.state != "ended"))
        verified = await self._verify_ended()
        await asyncio.gather(*(p.close() for p in list(self.clients.values()) + self.therapists))
        if self._ticker is not None:
            self._ticker.cancel()
        return {
            "calls_started": self.calls_started, "calls_connected": self.calls_connected,
            "calls_failed": self.calls_failed, "calls_ended": self.calls_ended,
            "calls_set_up_attempted": len(self.calls),
            "calls_verified_ended": verified["ended"], "calls_verified_open": verified["open"],
            "calls_verify_errors": verified["errors"],
            "requests": self.requests, "requests_cancelled": self.requests_cancelled,
            "requests_refused": self.requests_refused, "requests_stranded": self.requests_stranded,
            "setups_unreported": len(self.stats.setups),
            "chat_sent": chat["sent"], "chat_acked": chat["acked"], "chat_delivered": chat["delivered"],
            "frames_total": final_frames, "errors": dict(self.stats.errors),
            "connections_left": self.connections,
        }

    async def _verify_ended(self) -> dict[str, int]:
        """Ask the server (GET /api/calls/{id}, as the therapist) whether each call opened is now ended."""
        import aiohttp

        out = {"ended": 0, "open": 0, "errors": 0}
        gate = asyncio.Semaphore(8)

        async def one(http: Any, call: SimCall) -> None:
            person = call.therapist or call.client
            async with gate:
                try:
                    async with http.get(f"{person.url}/api/calls/{call.call_id}",
                                        headers={"Authorization": f"Bearer {person.account['token']}"},
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
                        body = await resp.json()
                    out["ended" if body.get("status") == "ended" else "open"] += 1
                except Exception:  # noqa: BLE001 - counted
                    out["errors"] += 1

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(one(http, c) for c in self.calls if c.call_id is not None))
        return out

    # ------------------------------------------------------------ the command loop

    async def run(self) -> None:
        await serve_commands(self.handle)

    async def handle(self, cmd: dict[str, Any]) -> None:
        ops = {"init": self.init, "add_calls": self.add_calls, "mark": self.mark, "collect": self.collect,
               "status": self.status, "stop": self.stop}
        try:
            op = ops.get(cmd["op"])
            if op is None:
                raise ValueError(f"unknown op {cmd['op']}")
            result = await op(cmd)
            self.reply({"id": cmd["id"], "ok": True, **result})
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator
            import traceback

            traceback.print_exc()
            self.reply({"id": cmd.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"})


async def _link_stats(pc: Any) -> tuple[int, int]:
    sent = lost = 0
    for sender in pc.getSenders():
        with contextlib.suppress(Exception):
            report = await sender.getStats()
            for stat in report.values():
                if stat.type == "outbound-rtp":
                    sent += int(stat.packetsSent or 0)
                elif stat.type == "remote-inbound-rtp":
                    lost += max(0, int(stat.packetsLost or 0))
    return sent, lost


def worker_main() -> int:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    if os.environ.get("LOADTEST_SLOW_CALLBACKS"):   # diagnosis: log every callback that holds the loop longer
        import logging

        logging.basicConfig(level=logging.WARNING)
        asyncio.run(_debug(Worker(out), float(os.environ["LOADTEST_SLOW_CALLBACKS"])), debug=True)
        return 0
    try:
        import uvloop

        uvloop.run(Worker(out).run())
    except ImportError:
        asyncio.run(Worker(out).run())
    return 0


async def _debug(worker: Worker, seconds: float) -> None:
    asyncio.get_running_loop().slow_callback_duration = seconds
    await worker.run()


if __name__ == "__main__":
    raise SystemExit(worker_main())
