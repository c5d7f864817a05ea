"""Event bus over Redis pub/sub: every process subscribed to `<prefix>:bus` receives every event."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from core.bus.memory import MemoryEventBus
from core.logging import get_logger
from core.tasks import cancel_and_wait

log = get_logger("bus")


class RedisEventBus(MemoryEventBus):
    def __init__(self, redis: Any, prefix: str) -> None:
        super().__init__()
        self.redis = redis
        self.channel = f"{prefix}:bus"
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        await self.redis.publish(self.channel, json.dumps({"type": event_type, "payload": payload}))

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        event = json.loads(message["data"])
                        await self.dispatch(event["type"], event["payload"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect after a Redis hiccup
                log.warning("bus.redis_reconnect", error=type(exc).__name__)
                await asyncio.sleep(0.5)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="redis-event-bus")
            await asyncio.wait_for(self._ready.wait(), 10)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
