"""What the calls domain is given by the server process."""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from core.ratelimit import RateLimiter
from core.settings import Settings
from pool.presence import PresenceStore


@dataclass
class CallsContext:
    db: Database
    keyring: Keyring
    clock: Clock
    settings: Settings
    limiter: RateLimiter
    presence: PresenceStore
