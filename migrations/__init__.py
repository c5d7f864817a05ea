"""Alembic migrations of the whole schema. `MODEL_MODULES` lists every module that defines tables."""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "core.audit",
    "accounts.models",
    "messaging.outbox",
    "calls.models",
    "pool.models",
    "transcription.models",
    "billing.models",
)


def load_models() -> None:
    """Import every model module so `core.db.Base.metadata` knows all tables."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
