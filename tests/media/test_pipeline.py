"""The server's audio fan-out: one resample, bounded queues, a slow sink never stalls the call or the other sinks."""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path

import av
import numpy as np

from core.crypto import Keyring
from media.pipeline import SpeakerPipeline
from media.recorder import OggOpusRecorder, read_recording


def browser_frame(n: int, level: float = 0.3) -> av.AudioFrame:
    """What aiortc delivers: s16 stereo (packed), 48 kHz, 960 samples per 20 ms."""
    t = (np.arange(960) + n * 960) / 48000
    mono = (level * 32767 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = 48000, n * 960, fractions.Fraction(1, 48000)
    return frame


class ListSink:
    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name, self.delay = name, delay
        self.samples: list[np.ndarray] = []
        self.closed = False

    async def write(self, pcm: np.ndarray) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.samples.append(pcm)

    async def close(self) -> None:
        self.closed = True


async def test_frames_are_resampled_once_to_16k_mono_at_the_same_level() -> None:
    sink = ListSink("fast")
    pipe = SpeakerPipeline([sink])
    for n in range(50):
        pipe.on_frame(browser_frame(n))
    pipe.close()
    await asyncio.wait_for(pipe.finished, 5)
    pcm = np.concatenate(sink.samples).astype(np.float32) / 32768
    assert abs(len(pcm) - 16000) < 400, "one second of audio at 16 kHz"
    rms = float(np.sqrt(np.mean(pcm[2000:] ** 2)))
    assert abs(rms - 0.3 / np.sqrt(2)) < 0.02, "no +3 dB from the stereo-to-mono conversion"
    assert sink.closed


async def test_a_slow_sink_drops_frames_without_stalling_the_call_or_the_others() -> None:
    slow, fast = ListSink("slow", delay=0.5), ListSink("fast")
    pipe = SpeakerPipeline([slow, fast], queue_frames=20)
    worst = 0.0
    for n in range(500):
        started = time.perf_counter()
        pipe.on_frame(browser_frame(n))
        worst = max(worst, time.perf_counter() - started)
        if n % 10 == 0:
            await asyncio.sleep(0)
    assert worst < 0.05, "handing a frame over never waits for a sink"
    assert pipe.dropped["slow"] > 400 and pipe.dropped["fast"] == 0
    assert pipe.queues["slow"].qsize() <= 20, "memory stays bounded"
    pipe.close()
    await asyncio.wait_for(pipe.finished, 10)
    assert sum(len(s) for s in fast.samples) > 0.95 * 500 * 320
    assert slow.closed and fast.closed


async def test_recording_is_encrypted_and_readable_up_to_the_last_chunk_after_a_crash(tmp_path: Path) -> None:
    keyring = Keyring.from_spec(Keyring.generate_spec("rec"))
    path = tmp_path / "client-0.ogg.enc"
    recorder = OggOpusRecorder(path, keyring, b"recording:1:client")
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 300 * np.arange(16000 * 3) / 16000)).astype(np.int16)
    for i in range(0, len(tone), 320):
        recorder.write(tone[i:i + 320])
    recorder.close()
    raw = path.read_bytes()
    assert b"OggS" not in raw
    audio, complete = read_recording(path, keyring, b"recording:1:client")
    assert complete and abs(len(audio) / 16000 - 3.0) < 0.1

    cut = tmp_path / "cut.ogg.enc"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    partial, complete = read_recording(cut, keyring, b"recording:1:client")
    assert not complete and 0.5 < len(partial) / 16000 < 3.0, "readable up to its last whole chunk"
