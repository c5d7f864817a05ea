"""Delivers pending outbox messages through the sender for their channel, with retries."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import select

from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from core.logging import get_logger
from core.tasks import cancel_and_wait
from messaging.outbox import Channel, OutboxMessage, OutboxStatus, decrypt
from messaging.senders import Sender

log = get_logger("messaging")
MAX_ATTEMPTS = 5


class OutboxDispatcher:
    """Polls the outbox (and wakes on `kick`) and hands each pending message to its channel's sender."""

    def __init__(self, db: Database, keyring: Keyring, senders: dict[Channel, Sender], clock: Clock, poll_s: float = 2.0):
        self.db, self.keyring, self.senders, self.clock, self.poll_s = db, keyring, senders, clock, poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Deliver soon, without waiting for the next poll."""
        self._wake.set()

    async def deliver_pending(self, limit: int = 50) -> int:
        """Deliver up to `limit` pending messages now; returns how many were sent."""
        async with self.db.transaction() as session:
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.pending)
                .order_by(OutboxMessage.id)
                .limit(limit)
            )
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.scalars(query)).all())
            sent = 0
            for row in rows:
                sender = self.senders.get(row.channel)
                row.attempts += 1
                try:
                    if sender is None:
                        raise RuntimeError(f"no sender for channel {row.channel.value}")
                    await sender.send(decrypt(row, self.keyring))
                except Exception as exc:  # noqa: BLE001 - any delivery failure is retried, then marked failed
                    row.last_error = type(exc).__name__
                    if row.attempts >= MAX_ATTEMPTS:
                        row.status = OutboxStatus.failed
                    log.warning("message.delivery_failed", outbox_id=row.id, attempts=row.attempts, error=type(exc).__name__)
                else:
                    row.status = OutboxStatus.sent
                    row.sent_at = self.clock.now()
                    sent += 1
            return sent

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            try:
                await self.deliver_pending()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a database hiccup
                log.warning("outbox.poll_failed", error=type(exc).__name__)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(Exception):
            await self.deliver_pending()
