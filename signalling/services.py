"""The services one server process runs with, built once by the app factory and shared by every handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import socketio

from accounts.context import AccountsContext
from core.bus import EventBus
from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from core.ratelimit import RateLimiter
from core.settings import Settings
from messaging.dispatcher import OutboxDispatcher
from calls.context import CallsContext
from media.hub import MediaHub
from transcription.backends import TranscriptionBackend
from pool.context import PoolContext
from pool.sweeper import Sweeper
from signalling.metrics import Metrics


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    keyring: Keyring
    limiter: RateLimiter
    bus: EventBus
    metrics: Metrics
    dispatcher: OutboxDispatcher
    accounts: AccountsContext
    sio: socketio.AsyncServer
    pool: PoolContext
    sweeper: Sweeper
    calls: CallsContext
    media: MediaHub
    transcriber: TranscriptionBackend
    redis: Any | None = None
    #: Set when the process begins a graceful shutdown.
    stopping: bool = False
    #: Periodic jobs started and stopped with the app (the call sweeper, ...).
    background: list[Any] = field(default_factory=list)
    #: Recording and live transcription of calls in this process (signalling.transcripts.CallMedia).
    call_media: Any = None
    #: Wallet, ledger, per-minute charging, Stripe (billing.context.BillingContext).
    billing: Any = None
