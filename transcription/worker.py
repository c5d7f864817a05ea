"""A transcription worker: `python -m transcription.worker`, as many as needed, on this machine or on GPU machines.

It reads utterances from the `<prefix>:tx:jobs` stream as a member of the consumer group `workers`, up to
`--batch` at once (those waiting at the same moment, from any speaker, are decoded together), and posts one result
per utterance to `<prefix>:tx:results` (the post and the acknowledgement in one transaction). Utterances a dead or
stuck worker has held for longer than `claim_idle_ms` are taken over first; a live worker keeps the ones it is
decoding fresh, so a long batch is not taken from it. It holds no encryption key and never logs text: the server
processes store the text encrypted and delete the audio. Every few seconds it writes its compute time per audio
second (over its last minute) to the `<prefix>:tx:workers` hash, which the servers export from `/metrics` as
`transcription_compute_per_audio{worker=...}`; it logs `transcription.near_capacity` when that passes 0.8.

Settings come from the same environment as the server (`REDIS_URL`, `THERAPY_REDIS_PREFIX`, `THERAPY_WHISPER_*`,
`THERAPY_TRANSCRIPTION_MAX_BATCH`, `THERAPY_TRANSCRIPTION_CLAIM_IDLE_MS`); flags override them. Redis AUTH and TLS
go in the URL: `rediss://user:password@redis.internal:6380/0?ssl_ca_certs=/etc/ssl/redis-ca.pem`.
SIGTERM or SIGINT: finish the batch in hand, post it, exit 0 (a second signal exits at once; what was in hand is
taken over by another worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.logging import configure_logging, get_logger
from core.settings import Settings, load_settings
from transcription.backends.redis import (
    LOAD_EVERY_S, WORKERS_GROUP, StreamKeys, consumer_name, ensure_group, forget_consumer, publish_load, result_fields,
)
from transcription.decoder import Decoded, Decoder
from transcription.jobs import UtteranceJob
from transcription.load import LoadMeter
from transcription.model import ModelSpec, load_model
from transcription.options import DecodeOptions

log = get_logger("transcription")

#: A job delivered this many times without a result (it keeps killing workers) is answered with an empty result.
MAX_DELIVERIES = 5

Entry = tuple[str, dict[str, str]]


class Worker:
    def __init__(self, redis: Any, prefix: str, decoder: Decoder, *, name: str | None = None, batch: int = 8,
                 claim_idle_ms: int = 10_000, block_ms: int = 1000, load: LoadMeter | None = None) -> None:
        self.redis, self.keys, self.decoder = redis, StreamKeys(prefix), decoder
        self.name = name or consumer_name("worker")
        self.batch, self.claim_idle_ms, self.block_ms = max(1, batch), claim_idle_ms, block_ms
        self.stopping = asyncio.Event()
        self.load = load or LoadMeter(name=self.name)
        self.decoded = 0
        self.beats = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self._own_history = True
        self._claim_cursor = "0-0"
        self._next_claim = 0.0

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        while True:
            try:
                await ensure_group(self.redis, self.keys.jobs, WORKERS_GROUP)
                break
            except RedisError as exc:  # Redis not up yet: wait for it rather than exit
                log.warning("worker.redis_unavailable", error=type(exc).__name__)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 2)
                if self.stopping.is_set():
                    return
        log.info("worker.started", worker=self.name, batch=self.batch, claim_idle_ms=self.claim_idle_ms)
        heartbeat = asyncio.create_task(self._publish_load_every(LOAD_EVERY_S), name="worker-load")
        try:
            while not self.stopping.is_set():
                try:
                    entries = await self._next_batch()
                    if entries:
                        await self._process(entries)  # even when stopping: this batch is in hand
                except RedisError as exc:  # what was in hand stays pending, and is taken over later
                    log.warning("worker.redis_error", error=type(exc).__name__)
                    await asyncio.sleep(1)
                    if "NOGROUP" in str(exc):  # Redis restarted empty: the group is gone
                        with contextlib.suppress(RedisError):
                            await ensure_group(self.redis, self.keys.jobs, WORKERS_GROUP)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(RedisError):
                await self.redis.hdel(self.keys.workers, self.name)
            await forget_consumer(self.redis, self.keys.jobs, WORKERS_GROUP, self.name)
            self._pool.shutdown(wait=False)
            log.info("worker.stopped", worker=self.name, decoded=self.decoded)

    async def publish_load(self) -> None:
        """Tell the servers this worker is alive, and how hard it works (see `transcription.backends.redis`)."""
        self.beats += 1
        await publish_load(self.redis, self.keys, self.name, self.load.ratio, self.beats)

    async def _publish_load_every(self, seconds: float) -> None:
        while True:
            try:
                await self.publish_load()
            except RedisError as exc:
                log.warning("worker.load_publish_failed", error=type(exc).__name__)
            await asyncio.sleep(seconds)

    # ------------------------------------------------------------------ reading

    async def _next_batch(self) -> list[Entry]:
        if self._own_history:  # a restart under the same name: what this consumer held before, first
            response = await self.redis.xreadgroup(WORKERS_GROUP, self.name, {self.keys.jobs: "0"}, count=self.batch)
            held = response[0][1] if response else []
            await self._ack_deleted([i for i, f in held if not f])
            held = await self._screen([(i, f) for i, f in held if f])
            if held:
                return held
            self._own_history = False
        entries = await self._claim_abandoned()
        if len(entries) < self.batch and not self.stopping.is_set():
            response = await self.redis.xreadgroup(
                WORKERS_GROUP, self.name, {self.keys.jobs: ">"}, count=self.batch - len(entries),
                block=None if entries else self.block_ms)
            entries += response[0][1] if response else []
        return entries

    async def _claim_abandoned(self) -> list[Entry]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        cursor, claimed, *_ = await self.redis.xautoclaim(
            self.keys.jobs, WORKERS_GROUP, self.name, self.claim_idle_ms, self._claim_cursor, count=self.batch)
        self._claim_cursor = cursor
        if cursor == "0-0":
            self._next_claim = now + max(0.1, self.claim_idle_ms / 2000)
        await self._ack_deleted([i for i, f in claimed if i and not f])
        entries = await self._screen([(i, f) for i, f in claimed if i and f])
        if entries:
            log.info("worker.reclaimed", worker=self.name, count=len(entries))
        return entries

    async def _screen(self, entries: list[Entry]) -> list[Entry]:
        """Entries delivered before (taken over, or held by this name before a restart), less those delivered so
        often that they must be what kills workers: those get an empty result, so the server stops waiting."""
        kept: list[Entry] = []
        for entry_id, fields in entries:
            info = await self.redis.xpending_range(self.keys.jobs, WORKERS_GROUP, entry_id, entry_id, 1)
            if info and int(info[0]["times_delivered"]) > MAX_DELIVERIES:
                log.error("worker.job_abandoned", entry=entry_id, deliveries=info[0]["times_delivered"])
                await self._post([(entry_id, fields, Decoded("", 0.0, 0.0, 0.0, False, "failed"))])
            else:
                kept.append((entry_id, fields))
        return kept

    async def _ack_deleted(self, ids: list[str]) -> None:
        if ids:
            await self.redis.xack(self.keys.jobs, WORKERS_GROUP, *ids)

    # ------------------------------------------------------------------ decoding

    async def _process(self, entries: list[Entry]) -> None:
        jobs: list[tuple[str, dict[str, str], UtteranceJob]] = []
        answers: list[tuple[str, dict[str, str], Decoded]] = []
        for entry_id, fields in entries:
            try:
                jobs.append((entry_id, fields, UtteranceJob.from_fields(fields)))
            except (KeyError, ValueError, TypeError):
                await self._reject(entry_id, fields)
        if jobs:
            audio_s = sum(j.seconds for _, _, j in jobs)
            started = time.perf_counter()
            heartbeat = asyncio.create_task(self._keep_fresh([i for i, _, _ in jobs]))
            try:
                results = await self._decode([j for _, _, j in jobs])
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            compute_s = time.perf_counter() - started
            self.load.add(audio_s, compute_s)
            self.decoded += len(jobs)
            log.info("transcription.batch", worker=self.name, size=len(jobs), audio_s=round(audio_s, 3),
                     compute_s=round(compute_s, 3), kept=sum(r.kept for r in results))
            answers += [(i, f, r) for (i, f, _), r in zip(jobs, results)]
        await self._post(answers)

    async def _reject(self, entry_id: str, fields: dict[str, str]) -> None:
        """An entry that is not a readable job: answered empty when its call is known (so the server deletes it and
        stops waiting for it), otherwise deleted here."""
        log.error("worker.bad_job", entry=entry_id)
        try:
            meta = json.loads(fields["meta"])
            UtteranceJob(audio=np.zeros(0, dtype=np.float32), **meta)
        except (KeyError, ValueError, TypeError):
            await self.redis.xack(self.keys.jobs, WORKERS_GROUP, entry_id)
            await self.redis.xdel(self.keys.jobs, entry_id)
            return
        await self._post([(entry_id, fields, Decoded("", 0.0, 0.0, 0.0, False, "invalid"))])

    async def _decode(self, jobs: list[UtteranceJob]) -> list[Decoded]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, self.decoder.decode, [j.audio for j in jobs], [j.previous_text for j in jobs])
        except Exception:  # noqa: BLE001 - one bad utterance must not lose the others: one by one
            log.exception("transcription.decode_failed", batch=len(jobs))
        out = []
        for job in jobs:
            try:
                [result] = await loop.run_in_executor(self._pool, self.decoder.decode, [job.audio], [job.previous_text])
            except Exception:  # noqa: BLE001
                log.exception("transcription.decode_failed", batch=1)
                result = Decoded("", 0.0, 0.0, 0.0, False, "error")
            out.append(result)
        return out

    async def _keep_fresh(self, ids: list[str]) -> None:
        """While decoding, reset the idle time of the entries in hand, so no other worker takes them over."""
        every = max(0.05, self.claim_idle_ms / 3000)
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(RedisError):
                await self.redis.xclaim(self.keys.jobs, WORKERS_GROUP, self.name, 0, ids, justid=True)

    async def _post(self, answers: list[tuple[str, dict[str, str], Decoded]]) -> None:
        """One result per job and the acknowledgements, in one transaction (both or neither); retried a few times,
        after which the jobs stay pending and another worker takes them over."""
        if not answers:
            return
        for attempt in range(5):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    for entry_id, fields, decoded in answers:
                        pipe.xadd(self.keys.results, result_fields(entry_id, fields["meta"], decoded, self.name))
                    pipe.xack(self.keys.jobs, WORKERS_GROUP, *[a[0] for a in answers])
                    await pipe.execute()
                return
            except RedisError as exc:
                log.warning("worker.post_failed", attempt=attempt + 1, error=type(exc).__name__)
                await asyncio.sleep(0.5 * (attempt + 1))


def parse_args(argv: Sequence[str] | None, settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m transcription.worker", description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default=settings.redis_url,
                   help="redis:// or rediss:// (TLS), with user:password@ for AUTH (default: REDIS_URL)")
    p.add_argument("--prefix", default=settings.redis_prefix, help="key prefix (default: THERAPY_REDIS_PREFIX)")
    p.add_argument("--name", default=None, help="consumer name (default: unique per process)")
    p.add_argument("--batch", type=int, default=settings.transcription_max_batch, help="utterances decoded at once")
    p.add_argument("--device", default=settings.whisper_device, choices=("cpu", "cuda", "auto"))
    p.add_argument("--compute-type", default=settings.whisper_compute_type,
                   help="int8 on CPU; float16 or int8_float16 on a GPU")
    p.add_argument("--model", default=settings.whisper_model, help="CTranslate2 model directory (default: bundled tiny.en)")
    p.add_argument("--cpu-threads", type=int, default=settings.whisper_cpu_threads)
    p.add_argument("--beam-size", type=int, default=settings.whisper_beam_size)
    p.add_argument("--claim-idle-ms", type=int, default=settings.transcription_claim_idle_ms,
                   help="take over utterances another worker has held this long")
    return p.parse_args(argv)


def worker_settings(environ: dict[str, str] | None = None) -> Settings:
    """The server's settings, read from the same environment; production's checks of the server's own secrets
    do not apply to a worker, which must not have them."""
    environ = dict(os.environ if environ is None else environ)
    environ.pop("THERAPY_ENV", None)
    return load_settings(environ)


async def serve(args: argparse.Namespace) -> int:
    spec = ModelSpec(path=args.model, device=args.device, compute_type=args.compute_type, cpu_threads=args.cpu_threads)
    started = time.perf_counter()
    decoder = await asyncio.get_running_loop().run_in_executor(
        None, lambda: Decoder(load_model(spec), DecodeOptions(beam_size=args.beam_size)))
    log.info("worker.model_loaded", device=args.device, compute_type=args.compute_type,
             seconds=round(time.perf_counter() - started, 2))
    redis = aioredis.from_url(args.redis_url, decode_responses=True, health_check_interval=30)
    worker = Worker(redis, args.prefix, decoder, name=args.name, batch=args.batch, claim_idle_ms=args.claim_idle_ms)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("worker.forced_exit", signal=signum)
            os._exit(1)
        log.info("worker.stopping", signal=signum)
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await worker.run()
    finally:
        await redis.aclose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    settings = worker_settings()
    configure_logging(settings.log_level, settings.log_json)
    args = parse_args(argv, settings)
    if not args.redis_url:
        log.error("worker.no_redis", hint="set REDIS_URL or pass --redis-url")
        return 2
    if os.environ.get("THERAPY_ENCRYPTION_KEYS"):
        log.warning("worker.has_encryption_keys", hint="workers need no encryption key: remove it from their environment")
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
