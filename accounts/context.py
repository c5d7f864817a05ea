"""What the accounts domain needs from the outside world, passed in (never imported globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from core.ratelimit import RateLimiter
from core.settings import Settings


@dataclass
class AccountsContext:
    db: Database
    keyring: Keyring
    clock: Clock
    settings: Settings
    limiter: RateLimiter
    #: Called after a transaction that queued outbox messages commits, so they go out at once.
    outbox_kick: Callable[[], None] = field(default=lambda: None)
