"""The event bus interface."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class EventBus(Protocol):
    """Publish a JSON-able event to every process (this one included); handlers subscribe by event type."""

    def subscribe(self, event_type: str, handler: Handler) -> None: ...

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
