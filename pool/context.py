"""What the pool domain is given by the server process."""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from core.ratelimit import RateLimiter
from core.settings import Settings
from pool.claims import ClaimStore
from pool.ports import Notifier, PoolBroadcast
from pool.presence import PresenceStore
from pool.states import PoolMemory


@dataclass
class PoolContext:
    db: Database
    keyring: Keyring
    clock: Clock
    settings: Settings
    limiter: RateLimiter
    claims: ClaimStore
    presence: PresenceStore
    broadcast: PoolBroadcast
    notifier: Notifier
    memory: PoolMemory

    @property
    def round_ttl_s(self) -> float:
        """How long round decisions are remembered: longer than any request lives."""
        return self.settings.request_ttl_s + 3600

    @property
    def offer_hold_s(self) -> float:
        """How long an offer keeps its therapist busy at most (the sweeper frees them sooner)."""
        return self.settings.offer_ttl_s + 60
