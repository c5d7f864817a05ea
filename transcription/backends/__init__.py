"""Where utterances are decoded, behind one interface: `memory` (worker threads in the server process) or `redis`
(a Redis Stream consumed by any number of `python -m transcription.worker` processes)."""

from transcription.backends.base import ResultSink, TranscriptionBackend
from transcription.backends.memory import ThreadedBackend

__all__ = ["ResultSink", "TranscriptionBackend", "ThreadedBackend"]
