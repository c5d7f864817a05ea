"""In-process event bus (embedded mode)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from core.bus.base import Handler
from core.logging import get_logger

log = get_logger("bus")


class MemoryEventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: str, handler: Handler) -> None:
        self._handlers[event_type].append(handler)

    async def dispatch(self, event_type: str, payload: dict[str, Any]) -> None:
        for handler in self._handlers.get(event_type, ()):
            try:
                await handler(payload)
            except Exception:  # noqa: BLE001 - one failing handler must not stop the others
                log.exception("bus.handler_failed", event_type=event_type)

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        await self.dispatch(event_type, payload)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
