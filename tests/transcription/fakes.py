"""Stand-ins for the tests of the transcription lifecycle: a decoder the test holds back, and audio frames fed to a
server's pipeline directly (as aiortc would deliver them, without a WebRTC link or real-time pacing)."""

from __future__ import annotations

import asyncio
import fractions
import threading
from typing import Any, Sequence

import av
import numpy as np

from benchmarks._peers import load_wav_48k
from media.peer import AudioPeer
from speech import clip
from transcription.decoder import Decoded

FRAME = 960  # 20 ms at 48 kHz


class GatedDecoder:
    """Decodes nothing until `gate` is set (a slow model, or one busy with other calls); then answers with the
    utterance's length, so each utterance has a text of its own."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.started = 0
        self.decoded = 0

    def decode(self, audios: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Decoded]:
        self.started += 1
        self.gate.wait(30)
        self.decoded += len(audios)
        return [Decoded(f"utterance of {len(a) / 16000:.2f} seconds", 0.9, 0.01, 1.0, True, batch=len(audios))
                for a in audios]


def speech_48k(name: str, silence_after_s: float = 0.0) -> np.ndarray:
    pcm = load_wav_48k(str(clip(name)), 0.0)
    return np.concatenate([pcm, np.zeros(int(48000 * silence_after_s), dtype=np.int16)])


def browser_frames(pcm48: np.ndarray) -> list[av.AudioFrame]:
    """What aiortc delivers: s16 stereo (packed), 48 kHz, 960 samples per 20 ms, pts from 0."""
    frames = []
    for n in range(len(pcm48) // FRAME):
        chunk = pcm48[n * FRAME:(n + 1) * FRAME]
        frame = av.AudioFrame.from_ndarray(np.repeat(chunk, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, n * FRAME, fractions.Fraction(1, 48000)
        frames.append(frame)
    return frames


async def attach_member(svc: Any, call_id: int, user_id: int, role: str, offset_ms: int = 1000) -> Any:
    """The server's audio peer of a member, with the consumer the server would give it (no WebRTC link: frames are
    fed with `feed`). Returns the consumer (a SpeakerPipeline)."""
    consumer = await svc.media.consumer_factory(call_id, user_id, role, offset_ms)
    svc.media.peers[(call_id, user_id)] = AudioPeer(call_id, user_id, role, consumer)
    return consumer


async def feed(pipeline: Any, pcm48: np.ndarray) -> None:
    """Hand the frames over faster than real time, without overrunning the pipeline's bounded queues."""
    for n, frame in enumerate(browser_frames(pcm48)):
        pipeline.on_frame(frame)
        if n % 25 == 24:
            while max(q.qsize() for q in pipeline.queues.values()) > 100:
                await asyncio.sleep(0.01)
    while any(q.qsize() for q in pipeline.queues.values()):
        await asyncio.sleep(0.01)
