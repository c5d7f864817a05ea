"""Speech for the load test's simulated people: clips encoded to Opus once, and a track that speaks them in turns.

A browser encodes its microphone with Opus on its own CPU; what the server receives is Opus packets. Encoding every
20 ms frame again in each simulated person would spend most of the load generator's CPU on work the server never
sees (aiortc encodes each frame in a thread-pool hop), so the clips are encoded once, by the coordinator, with
aiortc's own encoder and settings (`aiortc.codecs.opus.OpusEncoder`: 48 kHz stereo, 96 kbit/s, VoIP), and
`TalkTrack` hands the packets to aiortc pre-encoded (`av.Packet`), paced at real time. Between utterances it sends
encoded silence. The server receives the same RTP stream a browser would send.

`TalkTrack` records, per utterance, where it sits in the track's own timeline (the server's audio stream starts at
the first frame sent) and when the frame holding its last speech sample went out, for transcript latency; and, per
frame, how late it went out against its real-time schedule (`FrameClock`).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960                  # 20 ms
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
SILENCE_FRAMES = 50                  # one second of encoded silence, looped


@dataclass
class EncodedClip:
    name: str
    packets: list[bytes]             # one Opus payload per 20 ms frame
    speech_end_frames: int           # frames up to and including the one holding the last speech sample

    @property
    def seconds(self) -> float:
        return len(self.packets) * FRAME_S


@dataclass
class SpeechBank:
    clips: list[EncodedClip]
    silence: list[bytes]

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def load(path: Path) -> "SpeechBank":
        bank = pickle.loads(path.read_bytes())
        assert isinstance(bank, SpeechBank)
        return bank


def _encode(pcm: np.ndarray) -> list[bytes]:
    """48 kHz mono int16 -> one Opus payload per 20 ms frame (the last frame padded with silence)."""
    from aiortc.codecs.opus import OpusEncoder

    frames = math.ceil(len(pcm) / FRAME_SAMPLES)
    padded = np.zeros(frames * FRAME_SAMPLES, dtype=np.int16)
    padded[:len(pcm)] = pcm
    encoder = OpusEncoder()
    out: list[bytes] = []
    for i in range(frames):
        frame = av.AudioFrame.from_ndarray(padded[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, i * FRAME_SAMPLES, TIME_BASE
        payloads, _ = encoder.encode(frame)
        out.extend(payloads)
    return out


def build_bank(clips: list[tuple[str, np.ndarray, float]]) -> SpeechBank:
    """(name, 48 kHz mono int16 PCM, seconds to the end of the last speech) -> the encoded bank."""
    encoded = []
    for name, pcm, speech_end_s in clips:
        packets = _encode(pcm)
        end = max(1, min(len(packets), math.ceil(speech_end_s * SAMPLE_RATE / FRAME_SAMPLES)))
        encoded.append(EncodedClip(name, packets, end))
    silence = _encode(np.zeros(FRAME_SAMPLES * SILENCE_FRAMES * 2, dtype=np.int16))[-SILENCE_FRAMES:]
    return SpeechBank(encoded, silence)


class FrameClock:
    """How late each frame of a worker's tracks went out against its schedule (shared by every track)."""

    def __init__(self, late_s: float) -> None:
        self.late_s = late_s
        self.frames = 0
        self.late = 0
        self.max_lag_s = 0.0

    def record(self, lag_s: float) -> None:
        self.frames += 1
        if lag_s > self.late_s:
            self.late += 1
        if lag_s > self.max_lag_s:
            self.max_lag_s = lag_s

    def snapshot(self) -> tuple[int, int]:
        return self.frames, self.late


@dataclass
class Utterance:
    """One clip said once by one member, positions in frames of the speaker's own track."""

    clip: EncodedClip
    speaker: str
    start_frame: int = -1
    sent_end_at: float | None = None          # time.monotonic() when the last speech frame went out
    done: asyncio.Future[None] | None = None
    arrivals: list[float] = field(default_factory=list)   # when its transcript segments reached the therapist

    @property
    def start_ms(self) -> float:
        return self.start_frame * FRAME_S * 1000

    @property
    def speech_end_ms(self) -> float:
        return (self.start_frame + self.clip.speech_end_frames) * FRAME_S * 1000

    @property
    def end_ms(self) -> float:
        return (self.start_frame + len(self.clip.packets)) * FRAME_S * 1000

    def latency(self, now: float) -> tuple[float | None, bool]:
        """(end of speech -> the last segment that arrived after it, True) or, without one yet, (elapsed, False)."""
        if self.sent_end_at is None:
            return None, False
        after = [t for t in self.arrivals if t >= self.sent_end_at]
        if after:
            return max(after) - self.sent_end_at, True
        return now - self.sent_end_at, False


class TalkTrack(MediaStreamTrack):
    """Pre-encoded Opus at real-time pace: queued utterances one after another, silence in between.

    `mirror_of`: a second track (the peer-to-peer link) that says what its primary says, without bookkeeping."""

    kind = "audio"

    def __init__(self, bank: SpeechBank, clock: FrameClock | None, on_frame: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.bank, self.clock, self.on_frame = bank, clock, on_frame
        self.sent = 0
        self.started_at: float | None = None
        self._queue: list[Utterance] = []
        self._current: Utterance | None = None
        self._pos = 0

    def say(self, utterance: Utterance) -> asyncio.Future[None]:
        utterance.done = asyncio.get_running_loop().create_future()
        self._queue.append(utterance)
        return utterance.done

    @property
    def speaking(self) -> bool:
        return self._current is not None or bool(self._queue)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.started_at is None:
            self.started_at = now
        due = self.started_at + self.sent * FRAME_S
        if due > now:
            await asyncio.sleep(due - now)
            now = time.monotonic()
        if self.clock is not None:
            self.clock.record(now - due)
        if self._current is None and self._queue:
            self._current = self._queue.pop(0)
            self._current.start_frame = self.sent
            self._pos = 0
        current = self._current
        if current is not None:
            payload = current.clip.packets[self._pos]
            self._pos += 1
            if self._pos == current.clip.speech_end_frames:
                current.sent_end_at = now
            if self._pos >= len(current.clip.packets):
                self._current = None
                if current.done is not None and not current.done.done():
                    current.done.set_result(None)
        else:
            payload = self.bank.silence[self.sent % len(self.bank.silence)]
        packet = av.Packet(payload)
        packet.pts = self.sent * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        self.sent += 1
        if self.on_frame is not None:
            self.on_frame()
        return packet

    def stop(self) -> None:
        for utterance in ([self._current] if self._current else []) + self._queue:
            if utterance.done is not None and not utterance.done.done():
                utterance.done.cancel()
        self._queue.clear()
        self._current = None
        super().stop()


class MirrorTrack(MediaStreamTrack):
    """The peer-to-peer copy of a member's voice: the same packets as the primary `TalkTrack`, its own pacing."""

    kind = "audio"

    def __init__(self, primary: TalkTrack) -> None:
        super().__init__()
        self.primary = primary
        self.sent = 0
        self.started_at: float | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.started_at is None:
            self.started_at = now
        due = self.started_at + self.sent * FRAME_S
        if due > now:
            await asyncio.sleep(due - now)
        p = self.primary
        current = p._current  # noqa: SLF001 - same module family: say what the primary is saying now
        payload = current.clip.packets[min(p._pos, len(current.clip.packets) - 1)] if current else \
            p.bank.silence[self.sent % len(p.bank.silence)]
        packet = av.Packet(payload)
        packet.pts = self.sent * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        self.sent += 1
        return packet
