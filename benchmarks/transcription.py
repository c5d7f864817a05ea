"""Live transcription: accuracy, latency and throughput through the real path, against offline Whisper on the same
clips.

    python -m benchmarks.transcription [--speech-dir DIR] [--streams 4] [--passes 2] [--max-streams 16]
                                       [--device cpu|cuda] [--compute-type T] [--beam-size 5] [--max-batch 8]
                                       [--no-live] [--quick]

DIR holds audio files and a `manifest.tsv` in the format of `../shared/speech/` (columns file, seconds, sample_rate,
reference_text, ...; default that folder, or SPEECH_DIR). Clips may have any sample rate and length: they are
decoded and resampled with PyAV (16 kHz float for Whisper offline, 48 kHz int16 for the simulated microphones).

1. Offline baseline. The server's own model (`transcription.model.load_model` with the same ModelSpec the server
   builds from its settings: bundled tiny.en, int8, one thread unless told otherwise) transcribes each whole clip at
   once with faster-whisper: `language="en"`, beam size 5 (`--offline-beam-size`), `vad_filter=False`,
   `condition_on_previous_text=False`. `offline_rtf` = compute seconds / audio seconds (after one untimed warm-up).

2. Live path. The whole server runs in this process (`signalling.app.create_app`, SQLite in a temporary folder,
   in-memory bus, an aiohttp `AppRunner` on a loopback port; uvloop, as `scripts/serve` runs it), with the
   transcription settings of the flags. Each speaker stream is one call with recording consent (opened directly in
   the database, as tests/conftest.open_call does) between its own therapist, whose Socket.IO connection receives
   `call.transcript`, and a client (`benchmarks._peers.SimulatedMember`, aiortc) that joins and opens its audio-only
   server link with a `PcmTrack`: 0.5 s of silence, then the clips one after another, each followed by 1.0-1.5 s of
   digital silence (seeded random, so the streams' utterance ends do not line up), then 2 s of silence. Stream k
   starts at clip k * clips / streams (so all clips are played equally often) and plays them `--passes` times.
   On the server the audio goes through the real pipeline: Opus over DTLS-SRTP on loopback, aiortc's receiver,
   `SpeakerPipeline` (resample to 16 kHz), `SpeakerStream` (streaming Silero VAD), the threaded Whisper backend
   (batched decoding), `CallMedia.deliver` (stored encrypted, emitted to the therapist).

   Mapping segments to clips: a segment's `start_ms`/`end_ms` are call time = the stream's `offset_ms` (call time of
   the media offer, read from the server's SpeakerStream) + the position in the server's 16 kHz stream, which starts
   at the first frame the client sent (aiortc pulls the first frame only once DTLS is up). So position = ms -
   offset_ms, in the sender's own timeline. Each segment goes to the clip whose region holds its midpoint; regions
   are split half-way through the silences between clips (a 0.5-0.75 s margin either way, far above any drift).
   A clip's live text is its segments in order; WER is scored over all plays of all clips together.

   Latency, per clip played (one utterance region): the clock starts when `PcmTrack` sends the frame holding the
   clip's last speech sample (`on_sent` callback) and stops when the last segment assigned to that clip arrives at
   the therapist's socket (same process, same monotonic clock). Speech end (`--speech-end`): `vad` (default) =
   the end of the last speech chunk found by Silero over the whole clip offline (robust to trailing noise and
   silence); `energy`; or `clip` (end of file). Where the time goes, for that final segment, from probes that only
   observe (the server code is not changed): transport (sent -> the samples reach the VAD: Opus, RTP, aiortc's
   jitter buffer, resample, pipeline queue), vad (-> the utterance is cut: the end-of-speech silence the segmenter
   waits for), queue (-> its batch starts decoding), decode (the batch's decode), deliver (-> arrives: store,
   encrypt, emit, and the results stored before it in the same batch).

3. Throughput. The latency run (`--streams`, default 4) is the first level; then levels of more streams
   (`--levels`, default 6,8,12,16, up to `--max-streams`), each playing clips for ~`--level-seconds` (40) per
   stream, stop at the first that does not hold (if the first level fails, 2 and 1 are tried). A level holds
   when: no audio frame or utterance was dropped, the server received >= 98 % of the frames sent, the decode
   worker was busy < 90 % of the level's wall time (compute / wall; compute / audio is `load.ratio`), the
   transcriber backlog (utterances waiting) peaked at <= the number of streams, and latency did not grow (p50 of
   the last third of utterances - p50 of the first third < 0.5 s; judged from 9 utterances up). When the event
   loop lagged (p99 frame-send lag of the simulated microphones >= 0.1 s: they share the loop, and the CPU, with
   the server) the level carries a warning: its timings are less reliable. `streams_real_time` = the largest
   level that held. NB: the senders (aiortc encoders, ~4-9 % of a core each) run in this same process and on the
   same 2 cores as the server, on a machine other work shares (each level records the load average, this
   process's CPU use and the loop's lag), so the figure is a lower bound for a server with the machine to itself.
   Utterances lost (no segment ever arrived, e.g. a decode batch that failed) are reported as `utterances_lost`
   and as `problems`; they count as deletions in the WER and have no latency.

Output: a table (offline vs live WER, latency p50/p95/max and its breakdown, levels, targets pass/fail), then, as the
last line, one JSON object: clips, audio_seconds, wer, offline_wer, latency_p50_s, latency_p95_s, streams_real_time,
utterances, offline_rtf, live_compute_per_audio, latency_max_s, max_batch, batch_mean (utterances decoded together
in one CTranslate2 `generate` call, the mean over utterances of the latency run; `--max-batch 1` decodes one by one),
targets, passed, device, ... Exit 0 whether or not a
target is met (this is a measurement); 1 if the run itself failed.

`--quick` (the test suite): the 2 shortest clips, 2 streams, 1 pass, no ramp; `streams_real_time` is 2 when that
single level holds, else null. The live run plays only clips up to `--live-max-clip-s` seconds (default all; 20 with
`--quick`, so a folder of long clips does not stream minutes of audio in the test suite): the others are scored
offline only, and `wer_delta_points` compares the live WER with the offline WER of the clips played.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._speech import (
    DEFAULT_SPEECH_DIR,
    SAMPLE_RATE_16K,
    SAMPLE_RATE_48K,
    SPEECH_END_METHODS,
    Clip,
    load_clips,
    pct,
    word_errors,
)

FRAME = 960                     # samples per 20 ms frame at 48 kHz
LEAD_S, TAIL_S = 0.5, 2.0       # silence before the first clip and after the last
GAP_S = (1.0, 1.5)              # silence after each clip
TARGETS = {
    "wer_within_points_of_offline": 1.0,
    "latency_p50_s": 1.0,
    "latency_p95_s": 2.0,
    "latency_streams": 4,
    "min_utterances": 100,
}
PASSWORD = "bench horse battery staple"
QUICK_LIVE_MAX_CLIP_S = 20.0    # --quick: longer clips are scored offline only (the suite's real-time audio budget)


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# ---------------------------------------------------------------- offline baseline


def offline_baseline(clips: list[Clip], spec: Any, beam_size: int) -> dict[str, Any]:
    from transcription.model import load_model

    t0 = time.perf_counter()
    model = load_model(spec)
    load_s = time.perf_counter() - t0
    segments, _ = model.transcribe(np.zeros(SAMPLE_RATE_16K, dtype=np.float32), language="en", beam_size=beam_size,
                                   vad_filter=False, condition_on_previous_text=False)
    list(segments)  # warm-up, untimed
    texts, compute = [], 0.0
    for clip in clips:
        t0 = time.perf_counter()
        segments, _ = model.transcribe(clip.audio16, language="en", beam_size=beam_size, vad_filter=False,
                                       condition_on_previous_text=False)
        text = " ".join(s.text.strip() for s in segments).strip()
        compute += time.perf_counter() - t0
        texts.append(text)
    audio = sum(c.seconds for c in clips)
    scores = word_errors([c.reference for c in clips], texts)
    per_clip = {c.name: word_errors([c.reference], [t])["wer"] for c, t in zip(clips, texts)}
    return {"wer": scores["wer"], "scores": scores, "rtf": compute / audio, "compute_s": compute, "load_s": load_s,
            "texts": dict(zip((c.name for c in clips), texts)), "per_clip_wer": per_clip}


# ---------------------------------------------------------------- what each simulated microphone plays


@dataclass
class Item:
    """One clip as played in one stream: positions are 48 kHz samples of that stream's PCM."""

    clip: Clip
    stream: int
    start: int
    speech_end: int          # exclusive: the last speech sample is speech_end - 1
    end: int
    sent_end_at: float | None = None
    segments: list[tuple[float, dict[str, Any]]] = field(default_factory=list)


class Program:
    """A stream's PCM and the bookkeeping done as `PcmTrack` sends it (`on_sent`)."""

    def __init__(self, stream: int, clips: list[Clip], rng: random.Random) -> None:
        parts: list[np.ndarray] = [np.zeros(int(LEAD_S * SAMPLE_RATE_48K), dtype=np.int16)]
        pos = len(parts[0])
        self.items: list[Item] = []
        for clip in clips:
            pcm = clip.pcm48
            speech_end = min(len(pcm), max(1, round(clip.speech_end_s * SAMPLE_RATE_48K)))
            self.items.append(Item(clip, stream, pos, pos + speech_end, pos + len(pcm)))
            gap = np.zeros(int(rng.uniform(*GAP_S) * SAMPLE_RATE_48K), dtype=np.int16)
            parts += [pcm, gap]
            pos += len(pcm) + len(gap)
        parts.append(np.zeros(int(TAIL_S * SAMPLE_RATE_48K), dtype=np.int16))
        self.pcm = np.concatenate(parts)
        self.stream = stream
        self.first_sent_at: float | None = None
        self.done_at: float | None = None
        self.sent_frames = 0
        self.lags: list[float] = []
        self._next = 0
        # region boundaries: half-way through the silence between two clips
        self.bounds = [(a.end + b.start) / 2 for a, b in zip(self.items, self.items[1:])]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE_48K

    def on_sent(self, index: int, samples_sent: int) -> None:
        now = time.monotonic()
        if self.first_sent_at is None:
            self.first_sent_at = now
        self.sent_frames = index
        self.lags.append(now - (self.first_sent_at + (index - 1) * FRAME / SAMPLE_RATE_48K))
        while self._next < len(self.items) and self.items[self._next].speech_end <= samples_sent:
            self.items[self._next].sent_end_at = now
            self._next += 1
        if self.done_at is None and samples_sent >= len(self.pcm):
            self.done_at = now

    def item_at(self, pos48: float) -> Item:
        return self.items[bisect.bisect_right(self.bounds, pos48)]


def rotated(clips: list[Clip], k: int) -> list[Clip]:
    return clips[k:] + clips[:k]


def programs_for(clips: list[Clip], streams: int, *, passes: int | None = None, seconds: float | None = None,
                 seed: int = 0) -> list[Program]:
    """Stream k starts at clip k * len(clips) / streams; plays `passes` rounds, or clips until `seconds` of audio."""
    out = []
    for k in range(streams):
        order = rotated(clips, round(k * len(clips) / streams) % len(clips))
        if passes is not None:
            chosen = order * passes
        else:
            chosen, total, i = [], 0.0, 0
            target = seconds or 0.0
            while (total < target or not chosen) and i < 10 * len(order) + 1:
                clip = order[i % len(order)]
                i += 1
                step = clip.seconds + sum(GAP_S) / 2
                if chosen and total + step > 1.25 * target and any(total + c.seconds < 1.25 * target for c in order):
                    continue  # a clip that would overshoot by far: try the next one
                chosen.append(clip)
                total += step
        out.append(Program(k, chosen, random.Random(seed * 1000 + k)))
    return out


# ---------------------------------------------------------------- the server and its observers


class Probe:
    """Observes the server in this process without changing what it does: when audio reaches each speaker's VAD,
    when utterances are cut, batched, decoded and handed to the result sink."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.jobs: dict[tuple[int, int, int], dict[str, Any]] = {}
        self.feeds: dict[int, tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))
        self.offsets: dict[int, int] = {}
        self.pipelines: dict[int, Any] = {}
        self._batches: dict[int, tuple[float, float, int]] = {}
        self.failed_batches = 0
        self.failed_utterances = 0
        self.failures: collections.Counter[str] = collections.Counter()
        backend = svc.transcriber
        self.detailed = hasattr(backend, "decoder_factory") and hasattr(backend, "_sink")
        if self.detailed:
            factory = backend.decoder_factory

            def observed_factory() -> Any:
                decoder = factory()
                decode = decoder.decode

                def observed_decode(audios: Any, previous: Any) -> Any:
                    t0 = time.monotonic()
                    try:
                        results = decode(audios, previous)
                    except Exception as exc:
                        self.failed_batches += 1
                        self.failed_utterances += len(audios)
                        self.failures[f"{type(exc).__name__}: {exc}"[:200]] += 1
                        raise
                    t1 = time.monotonic()
                    for r in results:  # what was decoded together: one `generate` call (Decoded.batch)
                        self._batches[id(r)] = (t0, t1, getattr(r, "batch", 1))
                    return results

                decoder.decode = observed_decode
                return decoder

            backend.decoder_factory = observed_factory
            sink = backend._sink

            async def observed_sink(job: Any, decoded: Any) -> None:
                t0, t1, n = self._batches.pop(id(decoded), (None, None, 0))
                self.jobs[(job.call_id, job.start_ms, job.end_ms)] = {
                    "cut_at": job.cut_at, "decode_start": t0, "decode_end": t1, "batch": n, "sink_at": time.monotonic(),
                    "kept": decoded.kept, "why": decoded.why_dropped, "audio_s": job.seconds}
                await sink(job, decoded)

            backend.set_sink(observed_sink)

        make_consumer = svc.media.consumer_factory

        async def observed_consumer(call_id: int, user_id: int, role: str, offset_ms: int) -> Any:
            consumer = await make_consumer(call_id, user_id, role, offset_ms)
            stream = svc.call_media.streams.get((call_id, role))
            if role == "client" and stream is not None:
                self.offsets[call_id] = offset_ms
                self.pipelines[call_id] = consumer
                times, cums = self.feeds[call_id]
                feed = stream.feed

                async def observed_feed(samples: np.ndarray) -> None:
                    times.append(time.monotonic())
                    cums.append((cums[-1] if cums else 0) + len(samples))
                    await feed(samples)

                stream.feed = observed_feed
            return consumer

        svc.media.consumer_factory = observed_consumer

    def reached_vad_at(self, call_id: int, pos16: int) -> float | None:
        times, cums = self.feeds.get(call_id, ([], []))
        i = bisect.bisect_left(cums, pos16)
        return times[i] if i < len(times) else None


@dataclass
class Account:
    id: int
    token: str


class Bench:
    def __init__(self, settings: Any, workdir: Path) -> None:
        self.settings, self.workdir = settings, workdir
        self.app: Any = None
        self.runner: Any = None
        self.url = ""
        self.pairs: list[tuple[Account, Account]] = []
        self.sockets: list[Any] = []
        self.segments: dict[int, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
        self.complete: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.probe: Probe | None = None

    @property
    def svc(self) -> Any:
        from signalling.http import SERVICES

        return self.app[SERVICES]

    async def start(self) -> None:
        from aiohttp import web

        from signalling.app import create_app

        self.app = create_app(self.settings)
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.probe = Probe(self.svc)

    async def stop(self) -> str | None:
        for sock in self.sockets:
            with contextlib.suppress(Exception):
                await sock.disconnect()
        if self.runner is None:
            return None
        sockets = self.svc.sio.eio.sockets
        deadline = time.monotonic() + 5
        while sockets and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        try:
            await asyncio.wait_for(self.runner.cleanup(), 30)
        except Exception as exc:  # noqa: BLE001 - reported
            log(traceback.format_exc())
            return f"runner.cleanup() failed: {type(exc).__name__}: {exc}"
        return None

    async def ensure_pairs(self, n: int) -> None:
        """n (therapist, client) pairs, each therapist with a connected Socket.IO client listening for transcripts."""
        import aiohttp
        import socketio

        async with aiohttp.ClientSession() as http:
            while len(self.pairs) < n:
                k = len(self.pairs)
                therapist, client = await self._therapist(http, k), await self._client(http, k)
                sio = socketio.AsyncClient(reconnection=False)
                sio.on("call.transcript", self._on_transcript)
                sio.on("call.transcript_complete", self._on_complete)
                await sio.connect(self.url, auth={"token": therapist.token}, transports=["websocket"], wait_timeout=10)
                self.sockets.append(sio)
                self.pairs.append((therapist, client))

    async def _on_transcript(self, data: dict[str, Any]) -> None:
        segment = data["segment"]
        self.segments[int(segment["call_id"])].append((time.monotonic(), segment))

    async def _on_complete(self, data: dict[str, Any]) -> None:
        self.complete[int(data["call_id"])].set()

    async def _client(self, http: Any, n: int) -> Account:
        body = {"email": f"bench-client{n}-{secrets.token_hex(4)}@example.org", "password": PASSWORD,
                "display_name": f"Client {n}", "date_of_birth": "1990-05-17"}
        async with http.post(f"{self.url}/api/auth/register", json=body) as resp:
            data = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"client registration failed: {resp.status} {data}")
        return Account(data["user"]["id"], data["token"])

    async def _therapist(self, http: Any, n: int) -> Account:
        from accounts.models import ApplicationStatus, TherapistProfile

        body = {
            "email": f"bench-therapist{n}-{secrets.token_hex(4)}@example.org", "password": PASSWORD,
            "display_name": f"Dr Bench {n}", "qualifications": "MSc Counselling", "registration_body": "BACP",
            "registration_number": "123456", "insurance_provider": "Balens", "insurance_expiry": "2030-01-01",
            "bio": "I listen.", "expertise": ["anxiety"], "rate_pence_per_minute": 100,
        }
        async with http.post(f"{self.url}/api/auth/apply", json=body) as resp:
            data = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"therapist application failed: {resp.status} {data}")
        account = Account(data["user"]["id"], data["token"])
        async with self.svc.db.transaction() as session:  # approved as tests/conftest.approve_therapist does
            profile = await session.get(TherapistProfile, account.id)
            assert profile is not None
            profile.status = ApplicationStatus.approved
            profile.reviewed_at = self.svc.clock.now()
        return account

    async def open_call(self, therapist: Account, client: Account) -> int:
        """A call with recording consent, opened directly (as tests/conftest.open_call)."""
        from calls.models import CallKind
        from calls.opening import open_call, record_consent

        svc = self.svc
        async with svc.db.transaction() as session:
            call = open_call(session, now=svc.clock.now(), kind=CallKind.quick_connect, therapist_id=therapist.id,
                             client_id=client.id, terms_version=svc.settings.terms_version, recording_consent=True)
            await session.flush()
            record_consent(session, call, now=svc.clock.now())
            return call.id


# ---------------------------------------------------------------- one level: N streams at once


async def run_level(bench: Bench, programs: list[Program], label: str) -> dict[str, Any]:
    from benchmarks._peers import PcmTrack, SimulatedMember

    n = len(programs)
    await bench.ensure_pairs(n)
    svc, probe = bench.svc, bench.probe
    assert probe is not None
    backend = svc.transcriber
    call_ids = [await bench.open_call(*bench.pairs[k]) for k in range(n)]
    members: list[Any] = [None] * n
    backlog: list[tuple[float, int]] = []
    load0 = (backend.load.total_audio_s, backend.load.total_compute_s, getattr(backend, "dropped", 0))
    failed0 = (probe.failed_batches, probe.failed_utterances)
    log(f"[{label}] {n} stream(s), {max(p.seconds for p in programs):.0f} s of audio each")

    async def start_stream(k: int) -> None:
        member = members[k] = SimulatedMember(bench.url, bench.pairs[k][1].token, video=False)
        await member.connect()
        await member.join(call_ids[k])
        ack = await member.open_server_link(PcmTrack(programs[k].pcm, on_sent=programs[k].on_sent))
        if not ack.get("ok"):
            raise RuntimeError(f"server link refused: {ack}")

    stats: dict[str, Any] = {}
    loop_lags: list[float] = []

    async def watch_loop() -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.05)
            loop_lags.append(time.monotonic() - t0 - 0.05)

    watcher = asyncio.create_task(watch_loop())
    try:
        await asyncio.gather(*(start_stream(k) for k in range(n)))
        wall0, cpu0 = time.monotonic(), time.process_time()
        deadline = wall0 + max(p.seconds for p in programs) + 60
        while not all(p.done_at for p in programs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"[{label}] the senders did not finish in time")
            backlog.append((time.monotonic(), backend.backlog()))
            await asyncio.sleep(0.25)
        backlog.append((time.monotonic(), backend.backlog()))
        first = min(p.first_sent_at for p in programs if p.first_sent_at)
        wall = max(p.done_at for p in programs if p.done_at) - first
        process_cores = (time.process_time() - cpu0) / max(1e-6, time.monotonic() - wall0)
        load_average = os.getloadavg()[0]
        received = {cid: getattr(probe.pipelines.get(cid), "frames", 0) for cid in call_ids}
        dropped_frames = sum(sum(getattr(probe.pipelines.get(cid), "dropped", {}).values()) for cid in call_ids)
        for member, call_id in zip(members, call_ids):
            ack = await member.call("call.hangup", {"call_id": call_id})
            if not ack.get("ok"):
                log(f"[{label}] hang-up refused: {ack}")
        drained = time.monotonic()
        for cid in call_ids:
            await asyncio.wait_for(bench.complete[cid].wait(), 120)
        stats = {
            "wall_s": wall, "drain_s": time.monotonic() - drained,
            "frames_sent": sum(p.sent_frames for p in programs), "frames_received": sum(received.values()),
            "frames_dropped": dropped_frames,
            "utterances_dropped": getattr(backend, "dropped", 0) - load0[2],
            "audio_s": backend.load.total_audio_s - load0[0], "compute_s": backend.load.total_compute_s - load0[1],
            "backlog_max": max((b for _, b in backlog), default=0),
            "process_cores": process_cores, "load_average_1m": load_average,
            "loop_lag_p99_s": pct(loop_lags, 99), "loop_lag_max_s": max(loop_lags, default=None),
            "failed_batches": probe.failed_batches - failed0[0],
            "utterances_in_failed_batches": probe.failed_utterances - failed0[1],
        }
    finally:
        watcher.cancel()
        for member in members:
            if member is not None:
                with contextlib.suppress(Exception):
                    await member.close()
    return analyse_level(bench, programs, call_ids, stats, label)


def analyse_level(bench: Bench, programs: list[Program], call_ids: list[int], stats: dict[str, Any],
                  label: str) -> dict[str, Any]:
    probe = bench.probe
    assert probe is not None
    for program, cid in zip(programs, call_ids):
        offset = probe.offsets.get(cid, 0)
        for arrived, seg in bench.segments.get(cid, []):
            mid_ms = (seg["start_ms"] + seg["end_ms"]) / 2 - offset
            program.item_at(mid_ms * SAMPLE_RATE_48K / 1000).segments.append((arrived, seg))
    rows = []
    for program, cid in zip(programs, call_ids):
        for item in program.items:
            segs = sorted(item.segments, key=lambda s: s[1]["start_ms"])
            row: dict[str, Any] = {"clip": item.clip.name, "stream": item.stream, "reference": item.clip.reference,
                                   "text": " ".join(s[1]["text"].strip() for s in segs).strip(),
                                   "segments": len(segs), "sent_end_at": item.sent_end_at, "latency": None}
            if segs and item.sent_end_at is not None:
                arrived, final = max(segs, key=lambda s: (s[0], s[1]["end_ms"]))
                row["latency"] = arrived - item.sent_end_at
                at_vad = probe.reached_vad_at(cid, item.speech_end // 3)
                job = probe.jobs.get((cid, final["start_ms"], final["end_ms"]))
                if at_vad is not None:
                    row["transport"] = at_vad - item.sent_end_at
                if job and job["decode_start"] is not None:
                    if at_vad is not None:
                        row["vad"] = job["cut_at"] - at_vad
                    row["queue"] = job["decode_start"] - job["cut_at"]
                    row["decode"] = job["decode_end"] - job["decode_start"]
                    row["deliver"] = arrived - job["decode_end"]
                    row["batch"] = job["batch"]
            rows.append(row)
    latencies = [r["latency"] for r in rows if r["latency"] is not None]
    timed = sorted((r for r in rows if r["latency"] is not None), key=lambda r: r["sent_end_at"])
    by_time = [r["latency"] for r in timed]
    third = max(1, len(by_time) // 3)
    growth = None
    if len(by_time) >= 9:
        growth = pct(by_time[-third:], 50) - pct(by_time[:third], 50)  # type: ignore[operator]
    batches = [r["batch"] for r in rows if "batch" in r]
    lags = [lag for p in programs for lag in p.lags]
    scores = word_errors([r["reference"] for r in rows], [r["text"] for r in rows])
    delivered = [r for r in rows if r["segments"]]
    delivered_scores = word_errors([r["reference"] for r in delivered], [r["text"] for r in delivered])
    n = len(programs)
    wall = stats.get("wall_s") or 1.0
    level: dict[str, Any] = {
        "label": label, "streams": n, "utterances": len(rows), "with_latency": len(latencies),
        "without_segment": sum(1 for r in rows if not r["segments"]),
        "wer": scores["wer"], "scores": scores, "wer_plays_with_text": delivered_scores["wer"],
        "latency_p50_s": pct(latencies, 50), "latency_p95_s": pct(latencies, 95),
        "latency_max_s": max(latencies) if latencies else None, "latency_growth_s": growth,
        "breakdown_p50_s": {k: r3(pct([r[k] for r in rows if k in r], 50))
                            for k in ("transport", "vad", "queue", "decode", "deliver")},
        "breakdown_p95_s": {k: r3(pct([r[k] for r in rows if k in r], 95))
                            for k in ("transport", "vad", "queue", "decode", "deliver")},
        "batch_mean": r3(float(np.mean(batches))) if batches else None,
        "sender_lag_p99_s": pct(lags, 99),
        "rx_ratio": (stats["frames_received"] / stats["frames_sent"]) if stats.get("frames_sent") else None,
        "decode_busy": stats.get("compute_s", 0.0) / wall,
        "compute_per_audio": (stats["compute_s"] / stats["audio_s"]) if stats.get("audio_s") else None,
        **{k: v for k, v in stats.items()},
        "rows": rows,
    }
    reasons = []
    if stats.get("frames_dropped"):
        reasons.append(f"{stats['frames_dropped']} frames dropped in the pipeline")
    if stats.get("utterances_dropped"):
        reasons.append(f"{stats['utterances_dropped']} utterances dropped (backlog full)")
    if level["rx_ratio"] is not None and level["rx_ratio"] < 0.98:
        reasons.append(f"server received {level['rx_ratio']:.1%} of frames")
    if level["decode_busy"] >= 0.9:
        reasons.append(f"decoder busy {level['decode_busy']:.0%} of the time")
    if level["backlog_max"] > n:
        reasons.append(f"backlog peaked at {level['backlog_max']} utterances")
    if growth is not None and growth >= 0.5:
        reasons.append(f"latency grew by {growth:.2f} s over the run")
    if not latencies:
        reasons.append("no utterance was transcribed")
    warnings = []
    if level["sender_lag_p99_s"] is not None and level["sender_lag_p99_s"] >= 0.1:
        warnings.append(f"event loop behind (server and load generator share it): frame-send lag p99 "
                        f"{level['sender_lag_p99_s']:.2f} s, loop lag max {r3(stats.get('loop_lag_max_s'))} s, "
                        f"this process {stats.get('process_cores', 0):.2f} cores, load average "
                        f"{stats.get('load_average_1m', 0):.1f}: timings of this level are less reliable")
    if stats.get("failed_batches"):
        warnings.append(f"{stats['failed_batches']} decode batches failed ({stats['utterances_in_failed_batches']} "
                        "utterances never transcribed, so compute figures are optimistic)")
    if level["without_segment"]:
        warnings.append(f"{level['without_segment']} of {len(rows)} clips played got no segment")
    level["held"], level["reasons"], level["warnings"] = not reasons, reasons, warnings
    log(f"[{label}] {len(rows)} utterances, WER {scores['wer']:.2%}, latency p50 {r3(level['latency_p50_s'])} "
        f"p95 {r3(level['latency_p95_s'])} max {r3(level['latency_max_s'])} s, "
        f"decoder busy {level['decode_busy']:.0%}, "
        f"backlog max {level['backlog_max']}, sender lag p99 {r3(level['sender_lag_p99_s'])} s -> "
        f"{'held' if not reasons else 'NOT held: ' + '; '.join(reasons)}"
        + "".join(f"\n  warning: {w}" for w in warnings))
    return level


# ---------------------------------------------------------------- the run


def settings_for(args: argparse.Namespace, workdir: Path) -> Any:
    from core.crypto import Keyring
    from core.settings import load_settings

    return load_settings({}, overrides={
        "env": "test", "data_dir": str(workdir / "data"), "secret_key": secrets.token_urlsafe(48),
        "encryption_keys": Keyring.generate_spec("bench1"), "ice_loopback_only": True,
        "media_host_addresses": "127.0.0.1", "log_level": "warning",
        "whisper_model": args.model, "whisper_device": args.device, "whisper_compute_type": args.compute_type,
        "whisper_beam_size": args.beam_size, "whisper_cpu_threads": args.cpu_threads,
        "transcription_workers": args.workers, "transcription_max_batch": args.max_batch,
        # only the speaking member joins each benchmark call: the other is never late for it
        "call_join_timeout_s": 24 * 3600,
    })


def model_spec(settings: Any) -> Any:
    from transcription.model import ModelSpec

    return ModelSpec(path=settings.whisper_model, device=settings.whisper_device,
                     compute_type=settings.whisper_compute_type, cpu_threads=settings.whisper_cpu_threads,
                     workers=settings.transcription_workers)


def device_text(settings: Any) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{settings.whisper_device} ({settings.whisper_compute_type}, {settings.whisper_cpu_threads} thread(s) per "
            f"decode, {settings.transcription_workers} worker(s)); {os.cpu_count()} CPU cores: {cpu}")


async def run_live(args: argparse.Namespace, clips: list[Clip], settings: Any, workdir: Path) -> dict[str, Any]:
    from aiortc.rtcicetransport import RTCIceGatherer
    from argon2 import PasswordHasher

    from accounts import passwords
    from media.addresses import use_host_addresses

    use_host_addresses(["127.0.0.1"])
    # No STUN: aiortc's RTCPeerConnection() would otherwise use Google's public server (the join ack has none here).
    RTCIceGatherer.getDefaultIceServers = classmethod(lambda cls: [])  # type: ignore[method-assign]
    # Accounts are set-up, not what is measured: the cheapest argon2id parameters, as the test suite uses.
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

    bench = Bench(settings, workdir)
    out: dict[str, Any] = {"levels": []}
    try:
        await bench.start()
        main = await run_level(bench, programs_for(clips, args.streams, passes=args.passes, seed=1),
                               f"latency, {args.streams} stream{'s' if args.streams != 1 else ''}")
        out["main"] = main
        out["levels"].append(main)
        if not args.quick:
            if main["held"]:
                tries = [n for n in args.levels if args.streams < n <= args.max_streams]
            else:
                tries = [n for n in (2, 1) if n < args.streams]
            for n in tries:
                level = await run_level(bench, programs_for(clips, n, seconds=args.level_seconds, seed=n + 10),
                                        f"throughput, {n} stream{'s' if n != 1 else ''}")
                out["levels"].append(level)
                if main["held"] and not level["held"]:
                    break
                if not main["held"] and level["held"]:
                    break
    finally:
        if bench.probe is not None:
            out["decode_failures"] = dict(bench.probe.failures)
        error = await bench.stop()
        if error:
            out["cleanup_error"] = error
    return out


def streams_real_time(levels: list[dict[str, Any]]) -> int | None:
    held = [lv["streams"] for lv in levels if lv["held"]]
    return max(held) if held else None


def live_clips(clips: list[Clip], max_s: float | None) -> list[Clip]:
    """The clips the live run plays: those up to `max_s` seconds (all when None; the shortest if none is)."""
    if max_s is None:
        return clips
    return [c for c in clips if c.seconds <= max_s] or [min(clips, key=lambda c: c.seconds)]


def summarise(args: argparse.Namespace, clips: list[Clip], settings: Any, offline: dict[str, Any],
              live: dict[str, Any] | None, wall_s: float, load_before: tuple[float, ...]) -> dict[str, Any]:
    main = (live or {}).get("main")
    levels = (live or {}).get("levels", [])
    wer = main["wer"] if main else None
    played = live_clips(clips, args.live_max_clip_s)
    offline_played = offline["wer"] if len(played) == len(clips) else word_errors(
        [c.reference for c in played], [offline["texts"][c.name] for c in played])["wer"]
    delta = None if wer is None else (wer - offline_played) * 100
    passed = {
        "wer_within_1_point": None if delta is None else delta <= TARGETS["wer_within_points_of_offline"],
        "latency_p50": None if not main or main["latency_p50_s"] is None
        else main["latency_p50_s"] <= TARGETS["latency_p50_s"],
        "latency_p95": None if not main or main["latency_p95_s"] is None
        else main["latency_p95_s"] <= TARGETS["latency_p95_s"],
        "utterances_at_least_100": None if not main else main["utterances"] >= TARGETS["min_utterances"],
        "no_utterance_lost": None if not main else main["without_segment"] == 0,
        "latency_streams_4": None if not main else main["streams"] >= TARGETS["latency_streams"],
    }
    per_clip: dict[str, dict[str, Any]] = {}
    if main:
        by_clip: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in main["rows"]:
            by_clip[row["clip"]].append(row)
        for clip in clips:
            rows = by_clip.get(clip.name, [])
            live_wer = word_errors([r["reference"] for r in rows], [r["text"] for r in rows])["wer"] if rows else None
            per_clip[clip.name] = {"offline_wer": r3(offline["per_clip_wer"][clip.name]), "live_wer": r3(live_wer),
                                   "plays": len(rows), "live_example": rows[0]["text"] if rows else None,
                                   "offline_text": offline["texts"][clip.name]}
    level_view = [{k: (r3(v) if isinstance(v, float) else v) for k, v in lv.items() if k not in ("rows", "scores")}
                  for lv in levels]
    problems = [w for lv in levels for w in (f"{lv['label']}: {x}" for x in lv.get("warnings", []))]
    problems += [f"decode failed {n}x: {msg}" for msg, n in ((live or {}).get("decode_failures") or {}).items()]
    return {
        "clips": len(clips),
        "audio_seconds": r3(sum(c.seconds for c in clips)),
        "wer": r3(wer) if wer is None else round(wer, 4),
        "offline_wer": round(offline["wer"], 4),
        "wer_delta_points": None if delta is None else round(delta, 2),
        "latency_p50_s": r3(main["latency_p50_s"]) if main else None,
        "latency_p95_s": r3(main["latency_p95_s"]) if main else None,
        "latency_max_s": r3(main["latency_max_s"]) if main else None,
        "streams_real_time": streams_real_time(levels) if live else None,
        "utterances": main["utterances"] if main else 0,
        "utterances_with_latency": main["with_latency"] if main else 0,
        "utterances_lost": main["without_segment"] if main else None,
        "decode_failed_batches": main["failed_batches"] if main else None,
        "utterances_in_failed_batches": main["utterances_in_failed_batches"] if main else None,
        "decode_failures": (live or {}).get("decode_failures") or {},
        "wer_plays_with_text": r3(main["wer_plays_with_text"]) if main else None,
        "latency_streams": args.streams if main else None,
        "passes": args.passes,
        "live_clips": len(played) if main else 0,
        "live_audio_seconds": r3(sum(c.seconds for c in played) * args.passes * args.streams) if main else None,
        "offline_rtf": round(offline["rtf"], 4),
        "live_compute_per_audio": r3(main["compute_per_audio"]) if main else None,
        "live_decoder_busy": r3(main["decode_busy"]) if main else None,
        "latency_breakdown_p50_s": main["breakdown_p50_s"] if main else None,
        "latency_breakdown_p95_s": main["breakdown_p95_s"] if main else None,
        "targets": TARGETS,
        "passed": passed,
        "device": device_text(settings),
        "beam_size": settings.whisper_beam_size,
        "max_batch": settings.transcription_max_batch,
        "batch_mean": main["batch_mean"] if main else None,
        "speech_end": args.speech_end,
        "levels": level_view,
        "problems": problems,
        "per_clip": per_clip,
        "offline_scores": offline["scores"],
        "live_scores": main["scores"] if main else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(wall_s, 1),
        "quick": args.quick,
        "cleanup_error": (live or {}).get("cleanup_error"),
        "note": ("throughput measured with the load generator (aiortc senders) in the same process and on the same "
                 "cores as the server, on a machine shared with other work: streams_real_time is a lower bound"),
    }


def print_table(s: dict[str, Any]) -> None:
    def f(x: Any, unit: str = "") -> str:
        return "-" if x is None else f"{x}{unit}"

    def ok(v: bool | None) -> str:
        return "n/a" if v is None else ("PASS" if v else "FAIL")

    def line(name: str, value: Any, target: str = "", result: str = "", extra: str = "") -> None:
        print(f"{name:34} {value:>12} {target:>15}  {result}{extra}")

    p = s["passed"]
    wer = None if s["wer"] is None else f"{s['wer']:.2%}"
    print(f"Transcription benchmark: {s['clips']} clips, {s['audio_seconds']} s of speech; {s['device']}")
    print(f"load average before {s['load_average_before']}, after {s['load_average_after']}; wall {s['wall_s']} s")
    line("figure", "measured", "target", "result")
    line("offline WER (whole clips)", f"{s['offline_wer']:.2%}")
    line("live WER (WebRTC + VAD)", f(wer), "<= offline+1pt", ok(p["wer_within_1_point"]),
         f"  (delta {f(s['wer_delta_points'])} points)")
    line("latency p50", f(s["latency_p50_s"], " s"), "<= 1.0 s", ok(p["latency_p50"]))
    line("latency p95", f(s["latency_p95_s"], " s"), "<= 2.0 s", ok(p["latency_p95"]))
    line("latency max", f(s["latency_max_s"], " s"))
    line("utterances played", f(s["utterances"]), ">= 100", ok(p["utterances_at_least_100"]),
         f"  ({f(s['latency_streams'])} streams x {s['passes']} passes; {f(s['utterances_with_latency'])} timed)")
    line("utterances without any segment", f(s["utterances_lost"]), "0", ok(p["no_utterance_lost"]))
    line("offline compute / audio", s["offline_rtf"])
    line("live compute / audio", f(s["live_compute_per_audio"]))
    line("streams in real time", f(s["streams_real_time"]))
    if s["latency_breakdown_p50_s"]:
        print("latency of the final segment, p50 / p95 (s): " + ", ".join(
            f"{k} {s['latency_breakdown_p50_s'][k]} / {s['latency_breakdown_p95_s'][k]}"
            for k in s["latency_breakdown_p50_s"]))
    if s["levels"]:
        print(f"{'level':24} {'utt':>4} {'p50':>6} {'p95':>6} {'max':>6} {'busy':>5} {'c/a':>5} {'backlog':>7} "
              f"{'lag99':>6} {'load':>5}  held")
        for lv in s["levels"]:
            held = "yes" if lv["held"] else "no: " + "; ".join(lv["reasons"])
            print(f"{lv['label']:24} {lv['utterances']:>4} {f(lv['latency_p50_s']):>6} {f(lv['latency_p95_s']):>6} "
                  f"{f(lv['latency_max_s']):>6} {f(lv['decode_busy']):>5} {f(lv['compute_per_audio']):>5} "
                  f"{lv['backlog_max']:>7} {f(lv['sender_lag_p99_s']):>6} {f(lv.get('load_average_1m')):>5}  {held}")
    for problem in s.get("problems", []):
        print(f"problem: {problem}")
    print(s["note"])


async def amain(args: argparse.Namespace) -> int:
    from core.logging import configure_logging

    configure_logging("warning", json=False, stream=sys.stderr)
    started = time.monotonic()
    load_before = os.getloadavg()
    clips = load_clips(args.speech_dir, shortest=2 if args.quick else None, end_method=args.speech_end)
    log(f"{len(clips)} clips, {sum(c.seconds for c in clips):.1f} s, from {args.speech_dir}")
    workdir = Path(tempfile.mkdtemp(prefix="bench_transcription_"))
    settings = settings_for(args, workdir)
    status = 0
    offline: dict[str, Any] | None = None
    live: dict[str, Any] | None = None
    try:
        loop = asyncio.get_running_loop()
        offline = await loop.run_in_executor(None, offline_baseline, clips, model_spec(settings), args.offline_beam_size)
        log(f"offline: WER {offline['wer']:.2%}, {offline['rtf']:.3f} x real time "
            f"(model load {offline['load_s']:.2f} s)")
        if not args.no_live:
            played = live_clips(clips, args.live_max_clip_s)
            if len(played) < len(clips):
                log(f"live run: {len(played)} of {len(clips)} clips (those up to {args.live_max_clip_s:g} s)")
            for c in played:  # decode the 48 kHz PCM before any stream starts
                _ = c.pcm48
            live = await run_live(args, played, settings, workdir)
            if live.get("cleanup_error"):
                status = 1
    except Exception:  # noqa: BLE001 - reported; exit 1
        log(traceback.format_exc())
        status = 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if offline is None:
        print(json.dumps({"error": "the offline baseline failed (see stderr)", "clips": len(clips)}), flush=True)
        return 1
    summary = summarise(args, clips, settings, offline, live, time.monotonic() - started, load_before)
    if status and not args.no_live and live is None:
        summary["error"] = "the live run failed (see stderr)"
    print_table(summary)
    print(json.dumps(summary), flush=True)
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech-dir", type=Path, default=DEFAULT_SPEECH_DIR,
                        help=f"folder with audio files and manifest.tsv (default {DEFAULT_SPEECH_DIR})")
    parser.add_argument("--streams", type=int, default=4, help="concurrent speaker streams of the latency run (4)")
    parser.add_argument("--passes", type=int, default=2,
                        help="times each stream plays the clips in the latency run (2)")
    parser.add_argument("--max-streams", type=int, default=16, help="largest throughput level tried (16)")
    parser.add_argument("--levels", default="6,8,12,16", help="throughput levels above --streams (6,8,12,16)")
    parser.add_argument("--level-seconds", type=float, default=40.0, help="audio per stream per throughput level (40)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="Whisper device (server default cpu)")
    parser.add_argument("--compute-type", default=None, help="CTranslate2 compute type (server default int8)")
    parser.add_argument("--beam-size", type=int, default=None, help="beam size of the live path (server default: greedy, 1)")
    parser.add_argument("--offline-beam-size", type=int, default=5,
                        help="beam size of the offline baseline (5: the issue's reference point)")
    parser.add_argument("--cpu-threads", type=int, default=None, help="threads per decode (server default 1)")
    parser.add_argument("--workers", type=int, default=None, help="decode workers (server default 1)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="utterances decoded at once at most (server default 8; 1: one by one)")
    parser.add_argument("--model", default=None, help="CTranslate2 model directory (default: bundled tiny.en)")
    parser.add_argument("--speech-end", choices=SPEECH_END_METHODS, default="vad",
                        help="where a clip's speech ends, for the latency clock (vad)")
    parser.add_argument("--no-live", action="store_true", help="offline baseline only")
    parser.add_argument("--live-max-clip-s", type=float, default=None,
                        help="the live run plays only clips up to this long (default all; 20 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="2 short clips, 2 streams, 1 pass, no ramp, clips over 20 s offline only (test suite)")
    args = parser.parse_args()
    args.levels = sorted({int(x) for x in str(args.levels).split(",") if x.strip()})
    if args.quick:
        args.streams, args.passes = 2, 1
        if args.live_max_clip_s is None:
            args.live_max_clip_s = QUICK_LIVE_MAX_CLIP_S
    if args.streams < 1 or args.passes < 1:
        parser.error("--streams and --passes must be at least 1")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        sys.exit(asyncio.run(amain(args)))
    sys.exit(uvloop.run(amain(args)))


if __name__ == "__main__":
    main()
