"""Streaming voice-activity detection with the Silero model faster-whisper ships, keeping state per stream.

faster-whisper's own helper starts from a blank state on every call (right for files); here each stream carries
its LSTM state and the 64-sample context from window to window.
"""

from __future__ import annotations

import os
import threading

import faster_whisper
import numpy as np

from transcription.options import VAD_WINDOW

CONTEXT = 64
MODEL_PATH = os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")
_session = None
_lock = threading.Lock()


def silero_session() -> object:
    """One ONNX session per process, shared by every stream (its `run` is thread-safe)."""
    global _session
    with _lock:
        if _session is None:
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 4
            _session = onnxruntime.InferenceSession(MODEL_PATH, providers=["CPUExecutionProvider"], sess_options=opts)
        return _session


class VadStream:
    """Speech probabilities of one stream, one per 32 ms window, fed in any chunk sizes."""

    def __init__(self) -> None:
        self.session = silero_session()
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities for every whole window now available (leftover samples wait for the next call)."""
        data = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(data) // VAD_WINDOW * VAD_WINDOW
        self._pending = data[whole:]
        probs = np.empty(whole // VAD_WINDOW, dtype=np.float32)
        for i in range(len(probs)):
            window = data[i * VAD_WINDOW:(i + 1) * VAD_WINDOW]
            x = np.concatenate([self.context, window])[None, :]
            out, self.h, self.c = self.session.run(None, {"input": x, "h": self.h, "c": self.c})  # type: ignore[attr-defined]
            self.context = window[-CONTEXT:]
            probs[i] = float(np.asarray(out).ravel()[0])
        return probs
