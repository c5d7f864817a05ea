"""Embedded mode: utterances are decoded in worker threads inside the server process (CTranslate2 releases the GIL),
batching those that wait at the same moment."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from core.logging import get_logger
from transcription.backends.base import ResultSink
from transcription.decoder import Decoded, Decoder
from transcription.jobs import UtteranceJob
from transcription.load import LoadMeter

log = get_logger("transcription")


class ThreadedBackend:
    def __init__(self, decoder_factory: Callable[[], Decoder], *, workers: int = 1, max_batch: int = 8,
                 queue_max: int = 200, load: LoadMeter | None = None) -> None:
        self.decoder_factory, self.workers, self.max_batch = decoder_factory, workers, max_batch
        self.queue: asyncio.Queue[UtteranceJob] = asyncio.Queue(maxsize=queue_max)
        self.load = load or LoadMeter()
        self.dropped = 0
        self.failed = 0
        self._sink: ResultSink | None = None
        self._decoder: Decoder | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whisper")
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: collections.Counter[int] = collections.Counter()
        self._idle = asyncio.Condition()

    def set_sink(self, sink: ResultSink) -> None:
        self._sink = sink

    def backlog(self) -> int:
        return self.queue.qsize()

    async def pending(self, call_id: int) -> int:
        """Utterances of the call submitted here and not yet through the sink."""
        return self._pending.get(call_id, 0)

    def worker_loads(self) -> dict[str, float]:
        return {"embedded": self.load.ratio}

    async def submit(self, job: UtteranceJob) -> None:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("transcription.backlog_full", call_id=job.call_id, dropped=self.dropped)
            return
        self._pending[job.call_id] += 1

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            started = time.perf_counter()
            results = await self._decode(batch)
            self.load.add(sum(j.seconds for j in batch), time.perf_counter() - started)
            for job, result in zip(batch, results):
                if self._sink is not None and result is not None:
                    try:
                        await self._sink(job, result)
                    except Exception:  # noqa: BLE001
                        log.exception("transcription.sink_failed", call_id=job.call_id)
            async with self._idle:
                for job in batch:
                    self._pending[job.call_id] -= 1
                    if self._pending[job.call_id] <= 0:
                        del self._pending[job.call_id]
                self._idle.notify_all()

    async def _decode(self, batch: list[UtteranceJob]) -> list[Decoded | None]:
        """Results in batch order; if the batch fails, each utterance is tried alone (None: it could not be decoded)."""
        loop = asyncio.get_running_loop()
        if self._decoder is None:
            self._decoder = await loop.run_in_executor(self._pool, self.decoder_factory)
        decoder = self._decoder
        try:
            return list(await loop.run_in_executor(
                self._pool, decoder.decode, [j.audio for j in batch], [j.previous_text for j in batch]))
        except Exception:  # noqa: BLE001 - a failed batch must not lose its utterances
            log.exception("transcription.batch_failed", batch=len(batch))
        results: list[Decoded | None] = []
        for job in batch:
            try:
                results.extend(await loop.run_in_executor(self._pool, decoder.decode, [job.audio], [job.previous_text]))
            except Exception:  # noqa: BLE001
                self.failed += 1
                log.exception("transcription.decode_failed", call_id=job.call_id, failed=self.failed)
                results.append(None)
        return results

    async def drain(self, call_id: int, timeout: float = 60.0) -> None:
        async with self._idle:
            await asyncio.wait_for(self._idle.wait_for(lambda: self._pending[call_id] <= 0), timeout)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._worker(), name=f"whisper-{n}") for n in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._pool.shutdown(wait=False, cancel_futures=True)
