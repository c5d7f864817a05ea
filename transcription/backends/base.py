"""The transcription backend interface."""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol

from transcription.decoder import Decoded
from transcription.jobs import UtteranceJob

ResultSink = Callable[[UtteranceJob, Decoded], Awaitable[None]]


class TranscriptionBackend(Protocol):
    def set_sink(self, sink: ResultSink) -> None:
        """Where results go (store and deliver); called once by the server before `start`."""
        ...

    async def submit(self, job: UtteranceJob) -> None: ...

    async def drain(self, call_id: int, timeout: float = 60.0) -> None:
        """Wait until every submitted utterance of the call has a result (end of call)."""
        ...

    def backlog(self) -> int: ...

    async def pending(self, call_id: int) -> int:
        """Utterances of the call submitted and not yet stored (as far as this backend can know)."""
        ...

    def worker_loads(self) -> dict[str, float]:
        """Compute seconds per audio second of each decoding worker (over its last minute), by worker name."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
