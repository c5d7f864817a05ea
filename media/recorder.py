"""Recording one speaker: Opus in Ogg written with PyAV into a file encrypted in independently authenticated chunks,
so a recording cut short by a crash is readable up to its last chunk. Runs in a worker thread (never on the loop)."""

from __future__ import annotations

import fractions
import io
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from core.crypto import ChunkedWriter, Keyring, read_chunked

SAMPLE_RATE = 16000
FLUSH_EVERY_S = 1.0


class _EncryptingFile(io.RawIOBase):
    def __init__(self, writer: ChunkedWriter) -> None:
        self.writer = writer

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writer.write(bytes(data))
        return len(data)


def recording_aad(call_id: int, role: str) -> bytes:
    return f"recording:{call_id}:{role}".encode()


class OggOpusRecorder:
    """Feed 16 kHz mono int16 PCM with `write`; `close` finalises the Ogg stream and the encrypted file."""

    def __init__(self, path: Path, keyring: Keyring, aad: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._raw: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = ChunkedWriter(keyring, self._raw, aad=aad)
        self._container = av.open(_EncryptingFile(self._writer), mode="w", format="ogg")
        self._stream = self._container.add_stream("libopus", rate=48000)
        self._stream.layout = "mono"
        self._pts = 0
        self._flushed_at_pts = 0
        self.closed = False

    def write(self, pcm: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16, copy=False), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += frame.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        if self._pts - self._flushed_at_pts >= SAMPLE_RATE * FLUSH_EVERY_S:
            self._writer.flush_chunk()  # each second of audio is durable on its own
            self._raw.flush()
            self._flushed_at_pts = self._pts

    @property
    def seconds(self) -> float:
        return self._pts / SAMPLE_RATE

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._writer.close()
        self._raw.close()


def read_recording(path: Path, keyring: Keyring, aad: bytes) -> tuple[np.ndarray, bool]:
    """Decrypt and decode a recording to 16 kHz mono float32; also whether the file was finalised."""
    with open(path, "rb") as fh:
        result = read_chunked(keyring, fh, aad)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    try:
        with av.open(io.BytesIO(result.data)) as container:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError:
        pass  # a file cut short ends where its data ends
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return pcm.astype(np.float32) / 32768, result.complete


class RecorderSink:
    """The recorder as a pipeline sink: encoding and disk writes happen in a worker thread."""

    name = "recorder"

    def __init__(self, recorder: OggOpusRecorder) -> None:
        self.recorder = recorder

    async def write(self, pcm: np.ndarray) -> None:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.recorder.write, pcm)

    async def close(self) -> None:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.recorder.close)
