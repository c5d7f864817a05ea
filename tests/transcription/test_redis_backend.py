"""Transcription over Redis Streams: real `python -m transcription.worker` processes with the real model on real
speech, workers killed or stuck in the middle of a batch, several server processes reading the results, and the
full server (build_transcriber, storage encrypted once per utterance, delivery through the Socket.IO Redis manager)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import numpy as np
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from conftest import REDIS_URL, ROOT, TEST_KEYS, Canary, Users, open_call, start_server, wait_for
from core import migrate
from core.clock import FrozenClock
from core.crypto import Keyring
from core.db import Database
from speech import manifest, pcm16k, wer
from transcription.backends.redis import RedisBackend, StreamKeys, result_fields
from transcription.decoder import Decoded
from transcription.jobs import UtteranceJob
from transcription.models import TranscriptSegment
from transcription.segmenter import Segmenter
from transcription.store import store_segment

pytestmark = pytest.mark.redis

JFK = "jfk_inaugural-1961_ask-not.wav"          # 11 s, four utterances
SHORT = "ls-test-clean_61-70968-0000.wav"      # 4.9 s


def utterance_jobs(name: str, *, call_id: int, role: str = "client", speaker_id: int = 2) -> list[UtteranceJob]:
    """The clip cut by the streaming segmenter, as the server would submit it."""
    seg, out = Segmenter(), []
    audio = np.concatenate([pcm16k(name), np.zeros(16000, dtype=np.float32)])
    for i in range(0, len(audio), 1600):
        out += seg.feed(audio[i:i + 1600])
    out += seg.flush()
    return [UtteranceJob(call_id=call_id, speaker_role=role, speaker_id=speaker_id, index=u.index,
                         start_ms=u.start * 1000 // 16000, end_ms=u.end * 1000 // 16000, audio=u.audio) for u in out]


class Workers:
    """Worker subprocesses of one test; every one is killed at the end, whatever happened."""

    def __init__(self, prefix: str, logdir: Path) -> None:
        self.prefix, self.logdir = prefix, logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, REDIS_URL=REDIS_URL, THERAPY_REDIS_PREFIX=self.prefix, THERAPY_LOG_JSON="true",
                   PYTHONPATH=str(ROOT))
        env.pop("THERAPY_ENCRYPTION_KEYS", None)
        log = open(self.logdir / f"worker-{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "transcription.worker", "--name", name, *args],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> list[dict[str, Any]]:
        lines = (self.logdir / f"worker-{name}.log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def raw_log(self, name: str) -> str:
        return (self.logdir / f"worker-{name}.log").read_text()

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


@pytest.fixture
async def workers(redis_prefix: str, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(redis_prefix, tmp_path)
    try:
        yield w
    finally:
        w.kill_all()


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


async def owned_by(redis: Any, prefix: str, consumer: str) -> int:
    summary = await redis.xpending(StreamKeys(prefix).jobs, "workers")
    return sum(int(c["pending"]) for c in summary["consumers"] or [] if c["name"] == consumer)


async def stopped(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    await wait_for(lambda: proc.poll() is not None, timeout=timeout)
    return proc.returncode


async def test_utterances_go_through_a_worker_and_come_back_as_text(redis_prefix: str, redis: Any, workers: Workers) -> None:
    keys = StreamKeys(redis_prefix)
    backend = RedisBackend.from_url(REDIS_URL, redis_prefix, claim_idle_ms=5000)
    results: dict[str, Decoded] = {}

    async def sink(job: UtteranceJob, decoded: Decoded) -> None:
        assert job.key not in results
        results[job.key] = decoded

    backend.set_sink(sink)
    await backend.start()
    try:
        jobs = utterance_jobs(JFK, call_id=7)
        assert len(jobs) >= 3
        for job in jobs:  # before any worker exists: the group reads the stream from its start
            await backend.submit(job)
        assert await backend.pending(7) == len(jobs) and await redis.xlen(keys.jobs) == len(jobs)
        worker = workers.start("w1")
        await asyncio.wait_for(backend.drain(7, timeout=30), 35)

        assert set(results) == {j.key for j in jobs}
        text = " ".join(results[j.key].text for j in jobs)
        assert wer(manifest()[JFK], text) < 0.25, text
        assert await redis.xlen(keys.jobs) == 0, "the audio is deleted once its text is stored"
        assert await redis.xlen(keys.results) == 0
        assert not await redis.exists(keys.pending(7))
        assert (await redis.xpending(keys.jobs, "workers"))["pending"] == 0
        assert (await redis.xpending(keys.results, "servers"))["pending"] == 0

        worker.send_signal(signal.SIGTERM)
        assert await stopped(worker) == 0
        batches = [e for e in workers.log("w1") if e["event"] == "transcription.batch"]
        assert [b["size"] for b in batches] == [len(jobs)], "utterances waiting together are decoded in one batch"
        assert batches[0]["audio_s"] > 5 and batches[0]["compute_s"] > 0
        assert all(w not in workers.raw_log("w1") for w in ("Americans", "country")), "a worker never logs text"
        assert [e["event"] for e in workers.log("w1")][-2:] == ["worker.stopping", "worker.stopped"]
        consumers = await redis.xinfo_consumers(keys.jobs, "workers")
        assert "w1" not in {c["name"] for c in consumers}, "a worker leaving with nothing pending leaves the group"
    finally:
        await backend.stop()


async def make_call(db: Database) -> int:
    from accounts.models import Role, User
    from calls.models import CallKind
    from calls.opening import open_call as open_call_row

    now = FrozenClock().now()
    async with db.transaction() as session:
        people = [User(email=f"{role.value}-{uuid.uuid4().hex[:6]}@example.org", password_hash="x", role=role,
                       display_name=role.value, created_at=now, updated_at=now) for role in (Role.therapist, Role.client)]
        session.add_all(people)
        await session.flush()
        call = open_call_row(session, now=now, kind=CallKind.quick_connect, therapist_id=people[0].id,
                             client_id=people[1].id, terms_version="t", recording_consent=True)
        await session.flush()
        return call.id


async def test_a_worker_killed_or_stuck_mid_batch_loses_nothing_and_stores_nothing_twice(
    postgres_url: str, redis_prefix: str, redis: Any, workers: Workers
) -> None:
    keys = StreamKeys(redis_prefix)
    db = Database(postgres_url)
    await migrate.upgrade(db)
    call_id = await make_call(db)
    keyring, clock = Keyring.from_spec(TEST_KEYS), FrozenClock()
    delivered: collections.Counter[str] = collections.Counter()
    stored: collections.Counter[str] = collections.Counter()

    async def sink(job: UtteranceJob, decoded: Decoded) -> None:
        delivered[job.key] += 1
        if await store_segment(db, keyring, clock, job, decoded) is not None:
            stored[job.key] += 1

    servers = [RedisBackend.from_url(REDIS_URL, redis_prefix, claim_idle_ms=500) for _ in range(2)]  # two processes
    for backend in servers:
        backend.set_sink(sink)
        await backend.start()
    try:
        jobs = utterance_jobs(JFK, call_id=call_id) + utterance_jobs(SHORT, call_id=call_id, role="therapist", speaker_id=1)
        for job in jobs:
            await servers[0].submit(job)

        # A1 and A2 each read two utterances and are frozen in the middle of decoding them (before any result)
        frozen = {}
        for name in ("a1", "a2"):
            proc = frozen[name] = workers.start(name, "--batch", "2")
            await wait_for(lambda: owned_by(redis, redis_prefix, name), timeout=20, interval=0.002)
            proc.send_signal(signal.SIGSTOP)
            assert await owned_by(redis, redis_prefix, name) == 2 and await redis.xlen(keys.results) == 0
        assert not delivered
        frozen["a1"].kill()  # A1 crashes; A2 stays stuck
        frozen["a1"].wait(5)

        b = workers.start("b", "--claim-idle-ms", "500")
        await asyncio.wait_for(asyncio.gather(*(s.drain(call_id, timeout=40) for s in servers)), 45)
        assert set(stored) == {j.key for j in jobs} and set(stored.values()) == {1}
        assert await redis.xlen(keys.jobs) == 0
        assert any(e["event"] == "worker.reclaimed" for e in workers.log("b"))

        # A2 wakes up, finishes its batch and posts it too: two results for those utterances, each stored once
        frozen["a2"].send_signal(signal.SIGCONT)
        await wait_for(lambda: sum(delivered.values()) == len(jobs) + 2, timeout=20)
        await wait_for(lambda: servers[0].handled + servers[1].handled == len(jobs) + 2, timeout=5)
        assert sorted(delivered.values()) == [1] * (len(jobs) - 2) + [2, 2]
        assert set(stored.values()) == {1}, "a duplicate result is stored once"
        async with db.session() as session:
            rows = (await session.execute(select(TranscriptSegment.utterance_key, func.count()).group_by(
                TranscriptSegment.utterance_key))).all()
        kept = {k for k, n in rows}
        assert all(n == 1 for _, n in rows) and kept == set(stored)
        assert not await redis.exists(keys.pending(call_id)), "the count of outstanding utterances never goes below 0"
        assert await redis.xlen(keys.results) == 0 and (await redis.xpending(keys.results, "servers"))["pending"] == 0
        await wait_for(lambda: _no_pending(redis, keys), timeout=5)

        for proc in (frozen["a2"], b):
            proc.send_signal(signal.SIGTERM)
        assert await stopped(frozen["a2"]) == 0 and await stopped(b) == 0
    finally:
        for backend in servers:
            await backend.stop()
        await db.dispose()


async def _no_pending(redis: Any, keys: StreamKeys) -> bool:
    return (await redis.xpending(keys.jobs, "workers"))["pending"] == 0


async def test_results_are_shared_by_the_server_processes_and_each_is_stored_and_sent_once(
    postgres_url: str, redis_prefix: str, redis: Any, make_settings: Any, sockets: Any, canary: Canary
) -> None:
    """Two whole servers on one database; a simulated worker posts every result twice (it was retried)."""
    keys = StreamKeys(redis_prefix)
    settings = make_settings(database_url=postgres_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
                             transcription_backend="redis", transcription_claim_idle_ms=500)
    one = await start_server(settings)
    two = await start_server(settings)
    opened: list[Any] = []
    try:
        assert isinstance(one.services.transcriber, RedisBackend)
        async with aiohttp.ClientSession() as http:
            users = Users(one, http)
            therapist, client = await users.therapist(), await users.client()
            call_id = await open_call(one, therapist, client)
            screen = await sockets(two, therapist, "therapist-screen")
            client_screen = await sockets(one, client, "client-screen")
            opened += [screen, client_screen]

            silence = np.zeros(16000, dtype=np.float32)
            jobs = [UtteranceJob(call_id=call_id, speaker_role="client", speaker_id=client.id, index=n,
                                 start_ms=n * 2000, end_ms=n * 2000 + 1000, audio=silence) for n in range(6)]
            for job in jobs:
                await one.services.transcriber.submit(job)
            [[_, entries]] = await redis.xreadgroup("workers", "sim", {keys.jobs: ">"}, count=10)
            for attempt in range(2):
                async with redis.pipeline(transaction=True) as pipe:
                    for (entry_id, fields), job in zip(entries, jobs):
                        decoded = Decoded(canary.text(f"utterance {job.index} "), 0.9, 0.01, 1.2, True)
                        pipe.xadd(keys.results, result_fields(entry_id, fields["meta"], decoded, "sim"))
                    if attempt == 0:  # a third server process takes four results, then dies before storing them
                        pipe.xreadgroup("servers", "dead-server", {keys.results: ">"}, count=4)
                    pipe.xack(keys.jobs, "workers", *[i for i, _ in entries])
                    replies = await pipe.execute()
                if attempt == 0:
                    assert len(replies[len(jobs)][0][1]) == 4

            await asyncio.gather(one.services.transcriber.drain(call_id, 15), two.services.transcriber.drain(call_id, 15))
            await wait_for(lambda: len(screen.received("call.transcript")) >= len(jobs), timeout=10)
            await wait_for(lambda: one.services.transcriber.handled + two.services.transcriber.handled == 2 * len(jobs))
            await asyncio.sleep(0.3)
            segments = [d["segment"] for d in screen.received("call.transcript")]
            assert sorted(s["start_ms"] for s in segments) == [j.start_ms for j in jobs], "each utterance sent once"
            assert all(s["text"] == canary.text(f"utterance {s['start_ms'] // 2000} ") for s in segments)
            assert client_screen.received("call.transcript") == []
            assert "transcription.results_reclaimed" in canary.logs.getvalue(), "a dead process's results are taken over"
            async with one.services.db.session() as session:
                texts = (await session.scalars(select(TranscriptSegment.text_enc))).all()
            assert len(texts) == len(jobs) and not any(canary.marker in t for t in texts), "stored once, encrypted"
            assert await redis.xlen(keys.jobs) == 0 and await redis.xlen(keys.results) == 0
    finally:
        for sock in opened:  # before the servers stop, which would otherwise wait for them
            await sock.close()
        for server in (one, two):
            await server.runner.cleanup()


async def test_a_full_stream_refuses_utterances_and_says_so(redis_prefix: str, redis: Any, captured_logs: Any) -> None:
    backend = RedisBackend.from_url(REDIS_URL, redis_prefix, stream_max=3)
    try:
        jobs = [UtteranceJob(call_id=9, speaker_role="client", speaker_id=2, index=n, start_ms=n * 1000, end_ms=n * 1000 + 500,
                             audio=np.zeros(8000, dtype=np.float32)) for n in range(5)]
        for job in jobs:
            await backend.submit(job)
        assert backend.dropped == 2 and backend.backlog() == 3
        assert await redis.xlen(StreamKeys(redis_prefix).jobs) == 3, "nothing already queued is trimmed away"
        assert await backend.pending(9) == 3
        assert captured_logs.getvalue().count("transcription.backlog_full") == 2
        with pytest.raises(asyncio.TimeoutError):
            await backend.drain(9, timeout=0.3)
    finally:
        await backend.stop()


class StubDecoder:
    """Stands in for the model: the text says how long the audio was; audio of exactly 0.5 s cannot be decoded."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def decode(self, audios: list[np.ndarray], previous_texts: list[str]) -> list[Decoded]:
        self.batches.append(len(audios))
        if any(len(a) == 8000 for a in audios):
            raise RuntimeError("cannot decode")
        return [Decoded(f"samples {len(a)}", 0.9, 0.01, 1.1, True) for a in audios]


async def test_the_worker_answers_every_job_it_cannot_decode_so_nothing_waits_forever(redis_prefix: str, redis: Any) -> None:
    from transcription.worker import MAX_DELIVERIES, Worker

    keys = StreamKeys(redis_prefix)
    backend = RedisBackend.from_url(REDIS_URL, redis_prefix)
    results: dict[str, Decoded] = {}

    async def sink(job: UtteranceJob, decoded: Decoded) -> None:
        results[job.key] = decoded

    backend.set_sink(sink)
    await backend.start()

    def job(n: int, samples: int) -> UtteranceJob:
        return UtteranceJob(call_id=3, speaker_role="client", speaker_id=2, index=n, start_ms=n * 1000,
                            end_ms=n * 1000 + 500, audio=np.full(samples, 0.1, dtype=np.float32))

    for n, samples in enumerate((4000, 8000, 12000)):  # the second one fails to decode
        await backend.submit(job(n, samples))
    await backend.submit(job(3, 16000))
    # a worker that died holding all four; the last one is a job that every worker so far died on
    [[_, [*_, (poison_id, _)]]] = await redis.xreadgroup("workers", "ghost", {keys.jobs: ">"}, count=4)
    for _ in range(MAX_DELIVERIES):
        await redis.xclaim(keys.jobs, "workers", "ghost", 0, [poison_id])
    await redis.xadd(keys.jobs, {"meta": "not json", "pcm": ""})  # not a job at all

    decoder = StubDecoder()
    worker = Worker(aioredis.from_url(REDIS_URL, decode_responses=True), redis_prefix, decoder,  # type: ignore[arg-type]
                    batch=8, claim_idle_ms=0, block_ms=100)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(backend.drain(3, timeout=10), 12)
        assert results["client:2:0"].text == "samples 4000" and results["client:2:2000"].text == "samples 12000"
        assert not results["client:2:1000"].kept and results["client:2:1000"].why_dropped == "error"
        assert not results["client:2:3000"].kept and results["client:2:3000"].why_dropped == "failed"
        await wait_for(lambda: _stream_empty(redis, keys), timeout=5)
        assert decoder.batches[0] == 3, "the batch is decoded together, then one by one when it fails"

        await redis.delete(keys.jobs, keys.results)  # Redis restarted without its data: groups are made again
        await backend.submit(job(4, 4000))
        await asyncio.wait_for(backend.drain(3, timeout=10), 12)
        assert results["client:2:4000"].text == "samples 4000"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)
        await worker.redis.aclose()
        await backend.stop()


async def _stream_empty(redis: Any, keys: StreamKeys) -> bool:
    return await redis.xlen(keys.jobs) == 0 and (await redis.xpending(keys.jobs, "workers"))["pending"] == 0


async def test_redis_url_alone_sends_utterances_to_the_workers_unless_told_otherwise(make_settings: Any) -> None:
    from core.errors import ConfigError
    from signalling.app import build_transcriber
    from transcription.backends import ThreadedBackend

    assert isinstance(build_transcriber(make_settings()), ThreadedBackend), "no Redis: the server transcribes"
    chosen = build_transcriber(make_settings(redis_url=REDIS_URL))
    assert isinstance(chosen, RedisBackend), "REDIS_URL alone: transcription.worker processes transcribe"
    await chosen.redis.aclose()
    assert isinstance(build_transcriber(make_settings(redis_url=REDIS_URL, transcription_backend="threads")),
                      ThreadedBackend), "an explicit choice wins"
    with pytest.raises(ConfigError, match="REDIS_URL"):
        build_transcriber(make_settings(transcription_backend="redis"))


async def test_each_workers_load_is_exported_by_the_servers_and_nearing_capacity_is_logged(
    make_settings: Any, redis_prefix: str, captured_logs: Any
) -> None:
    from transcription.load import LoadMeter
    from transcription.worker import Worker

    clock = FrozenClock()
    running = await start_server(make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix), clock=clock)
    worker_redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        backend = running.services.transcriber
        assert isinstance(backend, RedisBackend)
        load = LoadMeter(clock=clock.monotonic, name="gpu-1")
        worker = Worker(worker_redis, redis_prefix, StubDecoder(), name="gpu-1", load=load)  # type: ignore[arg-type]
        load.add(audio_s=10.0, compute_s=5.0)
        assert "transcription.near_capacity" not in captured_logs.getvalue(), "half the time of the audio: fine"
        clock.advance(30)
        load.add(audio_s=10.0, compute_s=11.0)  # 16 s of compute for 20 s of audio over the last minute
        warnings = [json.loads(line) for line in captured_logs.getvalue().splitlines() if "near_capacity" in line]
        assert [(w["worker"], w["compute_per_audio"]) for w in warnings] == [("gpu-1", 0.8)]
        await worker.publish_load()
        await backend.watch_workers()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{running.url}/metrics") as resp:
                exported = await resp.text()
        assert 'transcription_compute_per_audio{worker="gpu-1"} 0.8' in exported, exported
        assert "transcription_waiting_without_worker 0.0" in exported
    finally:
        await worker_redis.aclose()
        await running.runner.cleanup()


async def test_utterances_waiting_with_no_worker_are_flagged_and_logged_at_most_once_a_minute(
    redis_prefix: str, captured_logs: Any
) -> None:
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from signalling.metrics import Metrics
    from transcription.worker import Worker

    clock = FrozenClock()
    backend = RedisBackend.from_url(REDIS_URL, redis_prefix, clock=clock.monotonic)
    metrics = Metrics()
    metrics.watch(SimpleNamespace(transcriber=backend, media=SimpleNamespace(peers={})))
    worker_redis = aioredis.from_url(REDIS_URL, decode_responses=True)

    def warned() -> int:
        return captured_logs.getvalue().count("transcription.no_worker")

    def flagged() -> bool:
        return "transcription_waiting_without_worker 1.0" in generate_latest(metrics.registry).decode()

    try:
        await backend.submit(utterance_jobs(SHORT, call_id=5)[0])
        await backend.watch_workers()
        assert not flagged() and warned() == 0, "a process just started gives the workers time to show up"
        clock.advance(31)
        await backend.watch_workers()
        assert flagged() and warned() == 1
        clock.advance(20)
        await backend.watch_workers()
        assert flagged() and warned() == 1, "at most once a minute"
        worker = Worker(worker_redis, redis_prefix, StubDecoder(), name="cpu-1")  # type: ignore[arg-type]
        await worker.publish_load()
        await backend.watch_workers()
        assert not flagged() and backend.worker_loads() == {"cpu-1": 0.0}
        clock.advance(31)  # the worker went away without a word
        await backend.watch_workers()
        assert flagged() and warned() == 2 and backend.worker_loads() == {}
    finally:
        await worker_redis.aclose()
        await backend.stop()
