"""Simulated browsers for tests, benchmarks and load tests: a Socket.IO connection plus aiortc peers that behave as
the web client does (peer-to-peer audio and video with the other member, an audio-only link to the server)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from typing import Any, Callable

import av
import numpy as np
import socketio
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.contrib.media import MediaStreamError
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms


class PcmTrack(AudioStreamTrack):
    """Sends 16-bit mono PCM at real-time pace: `pcm` once (then silence), or a 440 Hz tone when `pcm` is None.
    `on_sent(index, samples_sent)` is called for every frame sent, for latency bookkeeping."""

    def __init__(self, pcm: np.ndarray | None = None, on_sent: Callable[[int, int], None] | None = None) -> None:
        super().__init__()
        self.pcm = pcm
        self.on_sent = on_sent
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent * FRAME_SAMPLES / SAMPLE_RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        offset = self.sent * FRAME_SAMPLES
        if self.pcm is None:
            t = (np.arange(FRAME_SAMPLES) + offset) / SAMPLE_RATE
            chunk = (0.2 * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        else:
            chunk = self.pcm[offset:offset + FRAME_SAMPLES]
            if len(chunk) < FRAME_SAMPLES:
                chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = offset
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent(self.sent, offset + FRAME_SAMPLES)
        return frame


class FrameCounter:
    """Reads a received track to the end, counting frames."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.first_at: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            self.frames[track.kind] += 1
            self.first_at.setdefault(track.kind, time.monotonic())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await task


class SimulatedMember:
    """One member of a call as a browser would be. The member who arrives second makes the peer-to-peer offer."""

    def __init__(self, url: str, token: str, *, video: bool = True, audio: np.ndarray | None = None) -> None:
        self.url, self.token, self.video, self.audio = url, token, video, audio
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.call_id: int | None = None
        self.p2p: RTCPeerConnection | None = None
        self.server_link: RTCPeerConnection | None = None
        self.received = FrameCounter()
        self.connected_at: float | None = None
        self.errors: list[str] = []
        self.sio.on("*", self._on_event)
        self.sio.on("call.signal", self._on_signal)

    async def _on_event(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    async def connect(self) -> "SimulatedMember":
        await self.sio.connect(self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=10)
        return self

    async def call(self, event: str, data: dict[str, Any], timeout: float = 10) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    def _new_p2p(self) -> RTCPeerConnection:
        pc = RTCPeerConnection()
        pc.addTrack(PcmTrack())
        if self.video:
            pc.addTrack(VideoStreamTrack())
        pc.on("track", self.received.attach)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.monotonic()

        return pc

    async def join(self, call_id: int) -> dict[str, Any]:
        self.call_id = call_id
        ack = await self.call("call.join", {"call_id": call_id})
        if not ack.get("ok"):
            raise RuntimeError(f"join refused: {ack}")
        if ack["peer_present"]:
            self.p2p = self._new_p2p()
            await self.p2p.setLocalDescription(await self.p2p.createOffer())
            await self._send({"kind": "offer", "sdp": self.p2p.localDescription.sdp})
        return ack

    async def _send(self, signal: dict[str, Any]) -> None:
        ack = await self.call("call.signal", {"call_id": self.call_id, **signal})
        if not ack.get("ok"):
            self.errors.append(str(ack))

    async def _on_signal(self, data: dict[str, Any]) -> None:
        self.events.append(("call.signal", data))
        try:
            if data["kind"] == "offer":
                if self.p2p is not None:
                    await self.p2p.close()
                self.p2p = self._new_p2p()
                await self.p2p.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
                await self.p2p.setLocalDescription(await self.p2p.createAnswer())
                await self._send({"kind": "answer", "sdp": self.p2p.localDescription.sdp})
            elif data["kind"] == "answer" and self.p2p is not None:
                await self.p2p.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
        except Exception as exc:  # noqa: BLE001 - recorded for the test or benchmark to report
            self.errors.append(repr(exc))

    async def open_server_link(self, track: MediaStreamTrack | None = None) -> dict[str, Any]:
        """The audio-only link to the server's peer (calls with recording consent)."""
        pc = RTCPeerConnection()
        pc.addTrack(track or PcmTrack(self.audio))
        await pc.setLocalDescription(await pc.createOffer())
        ack = await self.call("call.media.offer", {"call_id": self.call_id, "sdp": pc.localDescription.sdp})
        if not ack.get("ok"):
            await pc.close()
            return ack
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
        self.server_link = pc
        return ack

    async def close(self) -> None:
        for pc in (self.p2p, self.server_link):
            if pc is not None:
                await pc.close()
        await self.received.close()
        if self.sio.connected:
            await self.sio.disconnect()


def load_wav_48k(path: str, pad_s: float = 0.0) -> np.ndarray:
    """A speech file as 48 kHz mono int16 (what a browser microphone sends), with `pad_s` of silence after it."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    pcm = np.concatenate(chunks).astype(np.int16)
    return np.concatenate([pcm, np.zeros(int(pad_s * SAMPLE_RATE), dtype=np.int16)])
