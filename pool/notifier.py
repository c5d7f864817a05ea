"""Text-message alerts to therapists, queued in the outbox, throttled per therapist, never with client details."""

from __future__ import annotations

from typing import Callable, Sequence

from sqlalchemy import select

from accounts.models import TherapistProfile
from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from core.logging import get_logger
from core.ratelimit import RateLimiter
from messaging.outbox import Channel, queue_message

log = get_logger("pool")
WAITING_TEXT = "Someone is waiting to talk to a therapist now. Open your dashboard: {url}"


class OutboxSmsNotifier:
    """Queues one SMS per therapist at most every `throttle_s` seconds."""

    def __init__(self, db: Database, keyring: Keyring, clock: Clock, limiter: RateLimiter, *, throttle_s: float,
                 dashboard_url: str, kick: Callable[[], None] = lambda: None) -> None:
        self.db, self.keyring, self.clock, self.limiter = db, keyring, clock, limiter
        self.throttle_s, self.dashboard_url, self.kick = throttle_s, dashboard_url, kick

    async def someone_waiting(self, therapist_ids: Sequence[int]) -> int:
        if not therapist_ids:
            return 0
        async with self.db.session() as session:
            rows = (await session.execute(
                select(TherapistProfile.user_id, TherapistProfile.phone).where(TherapistProfile.user_id.in_(therapist_ids))
            )).all()
        due = [(tid, phone) for tid, phone in rows if phone and await self.limiter.hit(f"sms:{tid}", 1, self.throttle_s) == 0]
        if not due:
            return 0
        async with self.db.transaction() as session:
            for _, phone in due:
                queue_message(
                    session, self.keyring, now=self.clock.now(), channel=Channel.sms, kind="someone_waiting",
                    recipient=phone, subject="", body=WAITING_TEXT.format(url=self.dashboard_url),
                )
        self.kick()
        log.info("pool.sms_queued", therapists=len(due))
        return len(due)
