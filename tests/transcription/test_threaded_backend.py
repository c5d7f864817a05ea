"""The embedded backend: batches what waits, survives a failing batch without losing its utterances, drains per call."""

from __future__ import annotations

import asyncio

import numpy as np

from transcription.backends.memory import ThreadedBackend
from transcription.decoder import Decoded
from transcription.jobs import UtteranceJob


class FussyDecoder:
    """Refuses batches of more than one (as CTranslate2 may), decodes single utterances."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def decode(self, audios: list, prompts: list) -> list[Decoded]:
        self.batches.append(len(audios))
        if len(audios) > 1:
            raise ValueError("batch refused")
        return [Decoded(f"utterance of {len(audios[0])} samples", 0.9, 0.01, 1.0, True)]


def job(call_id: int, n: int) -> UtteranceJob:
    return UtteranceJob(call_id=call_id, speaker_role="client", speaker_id=1, index=n, start_ms=n * 1000,
                        end_ms=n * 1000 + 500, audio=np.zeros(8000 + n, dtype=np.float32))


async def test_a_failing_batch_is_decoded_one_by_one_and_nothing_is_lost() -> None:
    decoder = FussyDecoder()
    backend = ThreadedBackend(lambda: decoder, workers=1, max_batch=8)
    got: list[str] = []

    async def sink(j: UtteranceJob, d: Decoded) -> None:
        got.append(j.key)

    backend.set_sink(sink)
    for n in range(5):
        await backend.submit(job(7, n))
    await backend.start()
    try:
        await backend.drain(7, timeout=10)
    finally:
        await backend.stop()
    assert sorted(got) == sorted(job(7, n).key for n in range(5))
    assert decoder.batches[0] == 5 and backend.failed == 0


async def test_a_full_queue_drops_and_counts() -> None:
    backend = ThreadedBackend(lambda: FussyDecoder(), workers=1, queue_max=2)
    for n in range(4):
        await backend.submit(job(1, n))
    assert backend.dropped == 2 and backend.backlog() == 2
    await asyncio.sleep(0)
