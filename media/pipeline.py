"""A member's audio on the server: each frame is resampled once to 16 kHz mono and fanned out to sinks (the recorder,
the live transcriber) through bounded queues. The event loop never waits on a sink: a sink that falls behind loses
frames (counted and logged), memory never grows without bound, and the call is never stalled."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import av
import numpy as np

from core.logging import get_logger
from media.consumers import LevelMeter

log = get_logger("media")
BATCH_FRAMES = 5  # 100 ms handed to a sink at once


class AudioSink(Protocol):
    name: str

    async def write(self, pcm: np.ndarray) -> None:
        """16 kHz mono int16 PCM, in order."""
        ...

    async def close(self) -> None: ...


class SpeakerPipeline(LevelMeter):
    """The frame consumer of one member's server peer."""

    def __init__(self, sinks: list[AudioSink], *, queue_frames: int = 500, label: str = "") -> None:
        super().__init__()
        self.sinks, self.label = sinks, label
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        self.queues: dict[str, asyncio.Queue[np.ndarray | None]] = {s.name: asyncio.Queue(maxsize=queue_frames) for s in sinks}
        self.dropped: dict[str, int] = {s.name: 0 for s in sinks}
        self._tasks = [asyncio.create_task(self._drain(s), name=f"sink-{s.name}-{label}") for s in sinks]
        self.finished = asyncio.get_running_loop().create_future()

    def on_frame(self, frame: av.AudioFrame) -> None:
        super().on_frame(frame)
        for out in self.resampler.resample(frame):
            pcm = out.to_ndarray().reshape(-1)
            for name, queue in self.queues.items():
                try:
                    queue.put_nowait(pcm)
                except asyncio.QueueFull:
                    self.dropped[name] += 1
                    if self.dropped[name] % 50 == 1:
                        log.warning("media.sink_behind", sink=name, pipeline=self.label, dropped=self.dropped[name])

    async def _drain(self, sink: AudioSink) -> None:
        queue = self.queues[sink.name]
        done = False
        while not done:
            chunks = [await queue.get()]
            while len(chunks) < BATCH_FRAMES and not queue.empty():
                chunks.append(queue.get_nowait())
            if chunks[-1] is None:
                done = True
                chunks.pop()
            data = [c for c in chunks if c is not None]
            if data:
                try:
                    await sink.write(np.concatenate(data))
                except Exception:  # noqa: BLE001 - one failing sink must not stop the others
                    log.exception("media.sink_failed", sink=sink.name)
        await sink.close()

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        for queue in self.queues.values():
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        asyncio.get_running_loop().create_task(self._finish())

    async def _finish(self) -> None:
        for name, queue in self.queues.items():
            if queue.full():  # make room for the end marker: the newest audio is lost, the sink still closes
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.finished.done():
            self.finished.set_result(results)
