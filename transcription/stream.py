"""One speaker's live transcription: audio in, utterances cut by VAD out to the backend, the last words kept as
the prompt for the next one."""

from __future__ import annotations

import asyncio

import numpy as np

from transcription.backends.base import TranscriptionBackend
from transcription.jobs import UtteranceJob
from transcription.options import SAMPLE_RATE, SegmenterOptions
from transcription.segmenter import Segmenter, Utterance

PROMPT_CHARS = 400


class SpeakerStream:
    """Also a media pipeline sink (`write` 16 kHz int16 PCM, `close`)."""

    name = "transcriber"

    def __init__(self, backend: TranscriptionBackend, *, call_id: int, speaker_role: str, speaker_id: int,
                 offset_ms: int, options: SegmenterOptions | None = None) -> None:
        self.backend = backend
        self.call_id, self.speaker_role, self.speaker_id, self.offset_ms = call_id, speaker_role, speaker_id, offset_ms
        self.segmenter = Segmenter(options)
        self.committed = ""
        self.submitted = 0

    def commit(self, text: str) -> None:
        """Remember what this speaker said, for the next utterance's prompt."""
        if text:
            self.committed = (self.committed + " " + text).strip()[-PROMPT_CHARS:]

    async def feed(self, samples: np.ndarray) -> None:
        """Add audio; VAD runs off the event loop; finished utterances go to the backend."""
        loop = asyncio.get_running_loop()
        for utt in await loop.run_in_executor(None, self.segmenter.feed, samples):
            await self._submit(utt)

    async def finish(self) -> None:
        for utt in self.segmenter.flush():
            await self._submit(utt)

    async def _submit(self, utt: Utterance) -> None:
        self.submitted += 1
        await self.backend.submit(UtteranceJob(
            call_id=self.call_id, speaker_role=self.speaker_role, speaker_id=self.speaker_id, index=utt.index,
            start_ms=self.offset_ms + utt.start * 1000 // SAMPLE_RATE, end_ms=self.offset_ms + utt.end * 1000 // SAMPLE_RATE,
            audio=utt.audio, previous_text=self.committed,
        ))

    async def write(self, pcm: np.ndarray) -> None:
        await self.feed(pcm.astype(np.float32) / 32768)

    async def close(self) -> None:
        await self.finish()
