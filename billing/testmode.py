"""Which Stripe this process talks to: Stripe itself (keys in settings), a Stripe-compatible server named by
`stripe_api_base`, or, in the embedded development default with no keys, a clearly marked **test mode** against a
local Stripe-compatible server (`billing.localstripe_ext`, started as a child process on a free loopback port, its
webhooks signed with a secret derived from the server's secret key)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import socket
import sys
from dataclasses import dataclass

from billing.stripe_client import StripeGateway
from core.errors import ConfigError
from core.logging import get_logger
from core.settings import Settings
from core.tasks import cancel_and_wait

log = get_logger("billing")
LOCAL_SECRET_KEY = "sk_test_local_test_mode"
LOCAL_PUBLISHABLE_KEY = "pk_test_local_test_mode"


class LocalStripeServer:
    """`python -m billing.localstripe_ext` as a child process, for as long as the server runs."""

    def __init__(self, port: int, webhook_url: str, webhook_secret: str) -> None:
        self.port, self.webhook_url, self.webhook_secret = port, webhook_url, webhook_secret
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _run(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "billing.localstripe_ext", "--port", str(self.port), "--webhook", self.webhook_url,
            "--webhook-secret", self.webhook_secret, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        log.warning("billing.test_mode", stripe=self.url, meaning="payments go to a local Stripe stand-in; no money moves")
        await self._proc.wait()

    def start(self) -> None:
        self._task = self._task or asyncio.create_task(self._run(), name="local-stripe")

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 5)
        await cancel_and_wait(self._task)
        self._task = None


@dataclass
class StripeSetup:
    gateway: StripeGateway | None
    webhook_secret: str
    local_server: LocalStripeServer | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wants_local_server(settings: Settings) -> bool:
    if settings.stripe_local_server is not None:
        return settings.stripe_local_server
    return settings.env == "development" and not settings.stripe_secret_key


def stripe_setup(settings: Settings) -> StripeSetup:
    if not wants_local_server(settings):
        return StripeSetup(StripeGateway.from_settings(settings), settings.stripe_webhook_secret)
    if settings.production:
        raise ConfigError("THERAPY_STRIPE_LOCAL_SERVER is a test mode; production needs THERAPY_STRIPE_SECRET_KEY")
    if importlib.util.find_spec("localstripe") is None:
        log.warning("billing.payments_unavailable", why="no Stripe keys, and localstripe is not installed")
        return StripeSetup(None, "")
    port = _free_port()
    secret = "whsec_local_" + hmac.new(settings.secret_key.encode(), b"stripe-local-webhooks", hashlib.sha256).hexdigest()[:32]
    local = LocalStripeServer(port, settings.effective_public_url + "/api/billing/stripe/webhook", secret)
    gateway = StripeGateway(LOCAL_SECRET_KEY, api_base=local.url, publishable_key=LOCAL_PUBLISHABLE_KEY, test_mode=True)
    return StripeSetup(gateway, secret, local)


def check_billing_settings(s: Settings) -> None:
    """Billing settings that cannot work, refused at start-up."""
    if not 0 <= s.billing_commission_bp <= 10_000:
        raise ConfigError("THERAPY_BILLING_COMMISSION_BP must be between 0 and 10000 (basis points)")
    if not 0 < s.billing_topup_min_pence <= s.billing_topup_max_pence <= s.billing_wallet_max_pence:
        raise ConfigError("billing top-up limits must satisfy 0 < min <= max <= THERAPY_BILLING_WALLET_MAX_PENCE")
    if s.billing_min_request_pence < 0 or s.billing_withdrawal_min_pence < 1 or s.billing_low_balance_warn_minutes < 0:
        raise ConfigError("billing minimums must not be negative (withdrawals at least 1 penny)")
    if s.billing_tick_interval_s <= 0 or s.stripe_webhook_tolerance_s < 1:
        raise ConfigError("THERAPY_BILLING_TICK_INTERVAL_S and THERAPY_STRIPE_WEBHOOK_TOLERANCE_S must be positive")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(s.billing_payout_timezone)
    except Exception:  # noqa: BLE001 - any failure means an unusable zone
        raise ConfigError(f"THERAPY_BILLING_PAYOUT_TIMEZONE {s.billing_payout_timezone!r} is not a time zone") from None
