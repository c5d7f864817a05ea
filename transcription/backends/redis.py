"""Distributed mode: utterances go to a Redis Stream, `python -m transcription.worker` processes decode them and post
the text back on a second stream, read by whichever server process is free; that process stores the segment
(encrypted, once per utterance key) and emits it through the Socket.IO Redis manager. Workers hold no key.

Keys, all under `<prefix>:tx:`

- `jobs`: stream of utterances (`meta` JSON, `pcm` base64 16-bit audio), consumer group `workers`. An entry is
  XACKed by the worker that posted its result and XDELed by the server once the result is stored, so XLEN is the
  number of utterances without a stored result, and no audio stays in Redis after its text is stored.
- `results`: stream of results (`meta` of the job, `text`, `confidence`, `no_speech_prob`, `compression_ratio`,
  `kept`, `why_dropped`, `job_id`, `worker`), consumer group `servers`; XACKed and XDELed once stored.
- `pending:<call_id>`: utterances of the call submitted and not yet stored (any process can wait on it: `drain`).
- `workers`: hash, one field per live worker (its consumer name): JSON `{"ratio": compute seconds per audio second
  over its last minute, "beat": a counter}`, written every `LOAD_EVERY_S`; the hash expires when no worker writes
  it. Server processes read it for `/metrics` and to notice utterances waiting with no worker to decode them.

A consumer that dies leaves its entries pending in its group; live ones take them over with XAUTOCLAIM once they
have been idle `claim_idle_ms`. A result may therefore be produced or handled twice: storage is keyed by utterance,
and the pending count only moves when the job entry is actually deleted, so a duplicate changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from core.logging import get_logger
from core.tasks import cancel_and_wait
from transcription.backends.base import ResultSink
from transcription.decoder import Decoded
from transcription.jobs import UtteranceJob

log = get_logger("transcription")

WORKERS_GROUP = "workers"
SERVERS_GROUP = "servers"
PENDING_TTL_S = 24 * 3600
#: How often a worker writes its load to the `workers` hash, and how long the hash lives without a write.
LOAD_EVERY_S = 5.0
WORKERS_TTL_S = 60
#: A worker not heard from for this long counts as gone (metrics, the "no worker" warning).
WORKER_SEEN_S = 30.0
#: Fields of workers silent this long are removed from the hash by the server processes.
WORKER_FORGET_S = 600.0
#: A result whose sink keeps failing (database down) is retried this many times, then given up (and logged).
MAX_SINK_ATTEMPTS = 5

# Atomic: refuse when the stream is full (counted and logged by the caller: nothing is trimmed silently), else add
# the job and count it as pending for its call.
_SUBMIT = """
local n = redis.call('XLEN', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
local id = redis.call('XADD', KEYS[1], '*', 'meta', ARGV[2], 'pcm', ARGV[3])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return {id, n + 1}
"""

# Atomic, after the result was stored: delete the audio; only the call that deletes it lowers the pending count
# (a duplicate result finds it gone); acknowledge and delete the result.
_DONE = """
local gone = redis.call('XDEL', KEYS[1], ARGV[1])
if gone == 1 then
  local left = redis.call('DECR', KEYS[3])
  if left <= 0 then redis.call('DEL', KEYS[3]) end
end
redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return gone
"""


@dataclass(frozen=True)
class StreamKeys:
    prefix: str

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:tx:jobs"

    @property
    def results(self) -> str:
        return f"{self.prefix}:tx:results"

    def pending(self, call_id: int) -> str:
        return f"{self.prefix}:tx:pending:{call_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:tx:workers"


def consumer_name(kind: str) -> str:
    """Unique per process (a restarted process must not inherit a dead one's name by accident)."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def ensure_group(redis: Any, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if missing; from id 0, so entries added before it are read."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def forget_consumer(redis: Any, stream: str, group: str, consumer: str) -> None:
    """Remove this consumer from its group when it holds nothing (deleting one with pending entries would lose them)."""
    with contextlib.suppress(RedisError):
        for info in await redis.xinfo_consumers(stream, group):
            if info.get("name") == consumer and int(info.get("pending", 0)) == 0:
                await redis.xgroup_delconsumer(stream, group, consumer)


async def prune_consumers(redis: Any, stream: str, group: str, idle_ms: int = 3_600_000) -> int:
    """Remove consumers left by processes that are gone (nothing pending, silent for an hour). A live consumer reads
    every second; if one were removed anyway, its next read would add it back."""
    removed = 0
    with contextlib.suppress(RedisError):
        for info in await redis.xinfo_consumers(stream, group):
            if int(info.get("pending", 0)) == 0 and int(info.get("idle", 0)) > idle_ms:
                await redis.xgroup_delconsumer(stream, group, info["name"])
                removed += 1
    return removed


def result_fields(job_id: str, meta: str, decoded: Decoded, worker: str) -> dict[str, str]:
    """The result entry a worker posts for the job entry `job_id` (its `meta` passed through unchanged)."""
    return {
        "meta": meta, "job_id": job_id, "worker": worker, "text": decoded.text,
        "confidence": repr(float(decoded.confidence)), "no_speech_prob": repr(float(decoded.no_speech_prob)),
        "compression_ratio": repr(float(decoded.compression_ratio)), "kept": "1" if decoded.kept else "0",
        "why_dropped": decoded.why_dropped,
    }


def parse_result(fields: dict[str, str]) -> tuple[str, UtteranceJob, Decoded]:
    """The job entry id, the job (without its audio) and the decoded result of a result entry."""
    meta = json.loads(fields["meta"])
    job = UtteranceJob(audio=np.zeros(0, dtype=np.float32), **meta)
    decoded = Decoded(
        text=fields.get("text", ""), confidence=float(fields["confidence"]),
        no_speech_prob=float(fields["no_speech_prob"]), compression_ratio=float(fields["compression_ratio"]),
        kept=fields["kept"] == "1", why_dropped=fields.get("why_dropped", ""),
    )
    return fields["job_id"], job, decoded


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


async def publish_load(redis: Any, keys: StreamKeys, worker: str, ratio: float, beat: int) -> None:
    """A worker's heartbeat: its compute-per-audio ratio, in the `workers` hash (see the module's docstring)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.workers, worker, json.dumps({"ratio": round(ratio, 4), "beat": beat}))
        pipe.expire(keys.workers, WORKERS_TTL_S)
        await pipe.execute()


class RedisBackend:
    """The server side: submits utterances to the jobs stream and stores the results any worker posts; watches the
    workers' heartbeats (their load for `/metrics`, and a warning when utterances wait and no worker is there).
    `clock` (monotonic seconds) is injectable for tests."""

    def __init__(self, redis: Any, prefix: str, *, stream_max: int = 1000, claim_idle_ms: int = 10_000,
                 consumer: str | None = None, read_count: int = 32, block_ms: int = 1000,
                 owns_client: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis, self.keys = redis, StreamKeys(prefix)
        self.stream_max, self.claim_idle_ms = stream_max, claim_idle_ms
        self.consumer = consumer or consumer_name("server")
        self.read_count, self.block_ms, self.owns_client = read_count, block_ms, owns_client
        self.dropped = 0
        self.handled = 0
        self._backlog = 0
        self._sink: ResultSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._attempts: dict[str, int] = {}
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_prune = 0.0
        self._submit = redis.register_script(_SUBMIT)
        self._done = redis.register_script(_DONE)
        self.clock = clock
        #: worker name -> (its last heartbeat as read, when this process first read it, its ratio)
        self._workers: dict[str, tuple[str, float, float]] = {}
        self._worker_seen_at = clock()  # a fresh process gives workers WORKER_SEEN_S to show up
        self._next_watch = 0.0
        self._unserved_warned_at: float | None = None
        #: True while utterances wait in the stream and no worker has been heard from for WORKER_SEEN_S.
        self.unserved = False

    @classmethod
    def from_url(cls, url: str, prefix: str, **kwargs: Any) -> "RedisBackend":
        """Its own connection pool (a blocking read holds a connection); `rediss://user:password@host` for TLS/AUTH."""
        return cls(aioredis.from_url(url, decode_responses=True), prefix, owns_client=True, **kwargs)

    def set_sink(self, sink: ResultSink) -> None:
        self._sink = sink

    def backlog(self) -> int:
        """Utterances without a stored result, across every process (as last seen: this must not wait on Redis)."""
        return self._backlog

    async def submit(self, job: UtteranceJob) -> None:
        fields = job.to_fields()
        try:
            added, length = await self._submit(
                keys=[self.keys.jobs, self.keys.pending(job.call_id)],
                args=[self.stream_max, fields["meta"], fields["pcm"], PENDING_TTL_S])
        except RedisError as exc:
            self.dropped += 1
            log.warning("transcription.submit_failed", call_id=job.call_id, dropped=self.dropped, error=type(exc).__name__)
            return
        self._backlog = int(length)
        if added in (0, "0"):
            self.dropped += 1
            log.warning("transcription.backlog_full", call_id=job.call_id, dropped=self.dropped, backlog=self._backlog)

    async def pending(self, call_id: int) -> int:
        """Utterances of the call submitted by any process and not yet stored."""
        return int(await self.redis.get(self.keys.pending(call_id)) or 0)

    def worker_loads(self) -> dict[str, float]:
        """Compute per audio second of each worker heard from in the last WORKER_SEEN_S (as last read)."""
        now = self.clock()
        return {name: ratio for name, (_, seen, ratio) in self._workers.items() if now - seen < WORKER_SEEN_S}

    async def watch_workers(self) -> None:
        """Read the workers' heartbeats; flag (and log, at most once a minute) utterances waiting with no worker."""
        now = self.clock()
        beats = await self.redis.hgetall(self.keys.workers)
        stale = []
        for name, raw in beats.items():
            known = self._workers.get(name)
            if known is not None and known[0] == raw:
                if now - known[1] >= WORKER_FORGET_S:
                    stale.append(name)
                continue
            try:
                ratio = float(json.loads(raw)["ratio"])
            except (ValueError, KeyError, TypeError):
                continue
            self._workers[name] = (raw, now, ratio)
        for name in [n for n in self._workers if n not in beats or n in stale]:
            del self._workers[name]
        if stale:
            await self.redis.hdel(self.keys.workers, *stale)
        self._worker_seen_at = max([self._worker_seen_at, *(seen for _, seen, _ in self._workers.values())])
        self._backlog = int(await self.redis.xlen(self.keys.jobs))
        self.unserved = self._backlog > 0 and now - self._worker_seen_at >= WORKER_SEEN_S
        if not self.unserved:
            self._unserved_warned_at = None  # the next time it happens is news again
        elif self._unserved_warned_at is None or now - self._unserved_warned_at >= 60:
            self._unserved_warned_at = now
            log.warning("transcription.no_worker", backlog=self._backlog,
                        silent_s=round(now - self._worker_seen_at), hint="start python -m transcription.worker")

    async def drain(self, call_id: int, timeout: float = 60.0) -> None:
        """Wait until every submitted utterance of the call has a stored result, whichever process stored it."""
        deadline = time.monotonic() + timeout
        while await self.pending(call_id) > 0:
            if time.monotonic() >= deadline:
                raise asyncio.TimeoutError(f"call {call_id}: utterances still without a result")
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        if self._task is None:
            await ensure_group(self.redis, self.keys.jobs, WORKERS_GROUP)
            await ensure_group(self.redis, self.keys.results, SERVERS_GROUP)
            self._task = asyncio.create_task(self._read_results(), name="transcription-results")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
            await forget_consumer(self.redis, self.keys.results, SERVERS_GROUP, self.consumer)
        if self.owns_client:
            await self.redis.aclose()

    # ------------------------------------------------------------------ results

    async def _read_results(self) -> None:
        while True:
            try:
                if self.clock() >= self._next_watch:
                    self._next_watch = self.clock() + LOAD_EVERY_S
                    await self.watch_workers()
                entries = await self._claim_abandoned()
                if not entries:
                    response = await self.redis.xreadgroup(
                        SERVERS_GROUP, self.consumer, {self.keys.results: ">"}, count=self.read_count,
                        block=self.block_ms)
                    entries = response[0][1] if response else []
                for entry_id, fields in entries:
                    await self._handle(entry_id, fields)
                self._backlog = int(await self.redis.xlen(self.keys.jobs))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a Redis hiccup must not stop the results
                log.warning("transcription.results_read_failed", error=type(exc).__name__)
                await asyncio.sleep(0.5)
                if "NOGROUP" in str(exc):  # Redis restarted empty: the groups are gone
                    with contextlib.suppress(RedisError):
                        await ensure_group(self.redis, self.keys.jobs, WORKERS_GROUP)
                        await ensure_group(self.redis, self.keys.results, SERVERS_GROUP)

    async def _claim_abandoned(self) -> list[tuple[str, dict[str, str]]]:
        """Results left pending by a server process that died (or by this one, when its sink failed)."""
        now = time.monotonic()
        if now < self._next_claim:
            return []
        cursor, entries, *_ = await self.redis.xautoclaim(
            self.keys.results, SERVERS_GROUP, self.consumer, self.claim_idle_ms, self._claim_cursor,
            count=self.read_count)
        self._claim_cursor = cursor
        if cursor == "0-0":
            self._next_claim = now + max(0.2, self.claim_idle_ms / 2000)
        if entries:
            log.info("transcription.results_reclaimed", count=len(entries), consumer=self.consumer)
        if now >= self._next_prune:
            self._next_prune = now + 600
            for stream, group in ((self.keys.jobs, WORKERS_GROUP), (self.keys.results, SERVERS_GROUP)):
                await prune_consumers(self.redis, stream, group)
        return [(i, f) for i, f in entries if i is not None]

    async def _handle(self, entry_id: str, fields: dict[str, str] | None) -> None:
        if not fields:  # deleted meanwhile (another process stored it)
            await self.redis.xack(self.keys.results, SERVERS_GROUP, entry_id)
            return
        try:
            job_id, job, decoded = parse_result(fields)
        except (KeyError, ValueError, TypeError):
            log.error("transcription.bad_result", entry=entry_id)
            await self.redis.xack(self.keys.results, SERVERS_GROUP, entry_id)
            await self.redis.xdel(self.keys.results, entry_id)
            return
        if self._sink is not None:
            try:
                await self._sink(job, decoded)
            except Exception:  # noqa: BLE001
                attempts = self._attempts[entry_id] = self._attempts.get(entry_id, 0) + 1
                if attempts < MAX_SINK_ATTEMPTS:
                    log.exception("transcription.sink_failed", call_id=job.call_id, attempt=attempts, retry=True)
                    return  # stays pending: reclaimed and retried after claim_idle_ms
                log.exception("transcription.sink_failed", call_id=job.call_id, attempt=attempts, retry=False)
        self._attempts.pop(entry_id, None)
        await self._done(keys=[self.keys.jobs, self.keys.results, self.keys.pending(job.call_id)],
                         args=[job_id, entry_id, SERVERS_GROUP])
        self.handled += 1
        log.debug("transcription.result", call_id=job.call_id, kept=decoded.kept,
                  latency_ms=max(0, int(time.time() * 1000) - entry_ms(job_id)))
