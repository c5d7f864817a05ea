"""What the billing domain is given by the server process: the database, clock and settings, the Stripe gateway, and
two ports back into the server (push an event to a user's screens; end a call whose paid time ran out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from core.settings import Settings

#: `push(user_id, event, payload)`: deliver a Socket.IO event to every connection of that user (any process).
Push = Callable[[int, str, dict[str, Any]], Awaitable[None]]
#: `end_call(call_id, reason)`: end an open call for both members, as a hang-up would.
EndCall = Callable[[int, str], Awaitable[None]]


async def _nowhere(user_id: int, event: str, payload: dict[str, Any]) -> None:
    return None


async def _no_end(call_id: int, reason: str) -> None:
    return None


@dataclass
class BillingContext:
    db: Database
    keyring: Keyring
    clock: Clock
    settings: Settings
    #: The Stripe gateway (billing.stripe_client.StripeGateway); None when no Stripe is configured.
    stripe: Any = None
    push: Push = _nowhere
    end_call: EndCall = _no_end
    #: The webhook signing secret in use (the setting, or the one the embedded test mode made up).
    webhook_secret: str = ""
    #: Called after a transaction that queued outbox e-mail commits, so it goes out at once.
    outbox_kick: Callable[[], None] = field(default=lambda: None)

    @property
    def test_mode(self) -> bool:
        """Payments go to a local Stripe-compatible server or Stripe's test mode: no real money moves."""
        return self.stripe is not None and self.stripe.test_mode
