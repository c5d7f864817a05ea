"""Structured logging (structlog): JSON lines when not on a terminal, readable lines on one.

Log events with fields (`log.info("pool.claimed", request_id=..., ms=...)`). Fields whose names suggest secrets or
users' words are masked by `redact_sensitive`, a safety net behind the rule that such text is never logged at all.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, MutableMapping

import structlog

SENSITIVE_KEYS = frozenset(
    {
        "password", "new_password", "token", "access_token", "authorization", "cookie", "secret",
        "text", "note", "notes", "body", "reason", "transcript", "chat", "link", "sdp", "phone",
        "display_name", "bio", "name", "guardian_name", "email", "message_text",
    }
)
QUIET_LOGGERS = ("socketio", "engineio", "socketio.server", "engineio.server", "aiohttp.access", "aioice", "aiortc", "alembic", "aiosqlite", "sqlalchemy", "asyncio", "urllib3", "stripe", "PIL")


def redact_sensitive(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values of sensitive keys, whatever the caller passed."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "info", json: bool | None = None, stream: Any = None) -> None:
    """Configure structlog and the standard library's logging once for the process."""
    stream = stream or sys.stderr
    as_json = (not stream.isatty()) if json is None else json
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_sensitive,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; `name` becomes the `component` field (resolved at each call, so tests can capture it)."""
    return structlog.get_logger() if name is None else structlog.get_logger(component=name)
