"""The Stripe gateway: the official `stripe` library (async, over aiohttp), with an idempotency key on every call that
creates something. Pointed at api.stripe.com, or at a Stripe-compatible server (`stripe_api_base`: localstripe in tests
and in the embedded test mode)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import stripe

from core.errors import ConfigError, Invalid, Unavailable
from core.logging import get_logger
from core.settings import Settings

log = get_logger("billing")
STRIPE_JS_URL = "https://js.stripe.com/v3/"
#: What a page that uses Stripe.js and the card Element must allow in its Content-Security-Policy (Stripe's documented
#: list, less what only other Elements need).
STRIPE_BROWSER_SOURCES: dict[str, tuple[str, ...]] = {
    "script-src": ("https://js.stripe.com", "https://*.js.stripe.com"),
    "frame-src": ("https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"),
    "connect-src": ("https://api.stripe.com",),
}


@dataclass(frozen=True)
class Intent:
    id: str
    client_secret: str
    status: str


def _fail(err: stripe.StripeError, what: str) -> Exception:
    """A Stripe error as one of ours: a card problem is the client's to fix; anything else is the provider's."""
    log.warning("billing.stripe_error", what=what, kind=type(err).__name__, code=getattr(err, "code", None),
                status=getattr(err, "http_status", None))
    if isinstance(err, stripe.CardError):
        return Invalid(err.user_message or "the card was declined", code="card_declined")
    return Unavailable("the payment provider could not be reached; try again shortly", code="payment_provider_error")


class StripeGateway:
    """The few Stripe calls billing makes. Everything goes through `stripe.StripeClient` with an aiohttp client, so no
    call blocks the event loop."""

    def __init__(self, secret_key: str, *, api_base: str = "", publishable_key: str = "", test_mode: bool = False,
                 timeout_s: float = 20.0) -> None:
        if not secret_key.startswith(("sk_", "rk_")):
            raise ConfigError("THERAPY_STRIPE_SECRET_KEY must be a Stripe secret key (sk_...)")
        bases: dict[str, str] = {}
        if api_base:
            bases = {"api": api_base.rstrip("/"), "connect": api_base.rstrip("/")}
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        self.client = stripe.StripeClient(secret_key, base_addresses=bases, http_client=self._http,  # type: ignore[arg-type]
                                          max_network_retries=2)
        self.publishable_key = publishable_key
        self.api_base = api_base
        #: No real money moves: Stripe test keys, or a local Stripe-compatible server.
        self.test_mode = test_mode or secret_key.startswith("sk_test_") or bool(api_base)

    @classmethod
    def from_settings(cls, settings: Settings) -> "StripeGateway | None":
        if not settings.stripe_secret_key:
            return None
        return cls(settings.stripe_secret_key, api_base=settings.stripe_api_base,
                   publishable_key=settings.stripe_publishable_key)

    async def create_payment_intent(self, *, amount_pence: int, metadata: dict[str, str], key: str) -> Intent:
        try:
            intent = await self.client.v1.payment_intents.create_async(
                {"amount": amount_pence, "currency": "gbp", "payment_method_types": ["card"], "metadata": metadata},
                options={"idempotency_key": key},
            )
        except stripe.StripeError as err:
            raise _fail(err, "payment_intent") from None
        return Intent(intent.id, intent.client_secret or "", intent.status)

    async def refund(self, *, payment_intent: str, amount_pence: int, metadata: dict[str, str], key: str) -> str:
        try:
            refund = await self.client.v1.refunds.create_async(
                {"payment_intent": payment_intent, "amount": amount_pence, "metadata": metadata},
                options={"idempotency_key": key},
            )
        except stripe.StripeError as err:
            raise _fail(err, "refund") from None
        return refund.id

    async def create_express_account(self, *, email: str, metadata: dict[str, str], key: str) -> str:
        try:
            account = await self.client.v1.accounts.create_async(
                {"type": "express", "country": "GB", "email": email, "metadata": metadata,
                 "capabilities": {"transfers": {"requested": True}}},
                options={"idempotency_key": key},
            )
        except stripe.StripeError as err:
            raise _fail(err, "account") from None
        return account.id

    async def account_link(self, *, account: str, refresh_url: str, return_url: str) -> str:
        try:
            link = await self.client.v1.account_links.create_async(
                {"account": account, "refresh_url": refresh_url, "return_url": return_url, "type": "account_onboarding"})
        except stripe.StripeError as err:
            raise _fail(err, "account_link") from None
        return link.url

    async def transfer(self, *, amount_pence: int, destination: str, metadata: dict[str, str], key: str) -> str:
        try:
            transfer = await self.client.v1.transfers.create_async(
                {"amount": amount_pence, "currency": "gbp", "destination": destination, "metadata": metadata},
                options={"idempotency_key": key},
            )
        except stripe.StripeError as err:
            raise _fail(err, "transfer") from None
        return transfer.id

    def start(self) -> None:
        """Started with the server (a background job's interface); the HTTP session opens on first use."""

    async def stop(self) -> None:
        try:
            await self._http.close_async()
        except Exception:  # noqa: BLE001 - closing regardless
            pass

    @property
    def js_url(self) -> str:
        """Where the browser loads Stripe.js: Stripe's own, or the stand-in a Stripe-compatible server serves at
        `<api_base>/js.stripe.com/v3/` (localstripe and `billing.localstripe_ext`)."""
        return self.api_base.rstrip("/") + "/js.stripe.com/v3/" if self.api_base else STRIPE_JS_URL

    def browser_sources(self) -> dict[str, tuple[str, ...]]:
        """The sources a page using Stripe.js must add to its Content-Security-Policy: Stripe's, or the origin of
        the Stripe-compatible server (whose stand-in loads, frames and calls only itself)."""
        if not self.api_base:
            return STRIPE_BROWSER_SOURCES
        parts = urlsplit(self.api_base)
        origin = f"{parts.scheme}://{parts.netloc}"
        return {"script-src": (origin,), "frame-src": (origin,), "connect-src": (origin,)}

    def public_config(self) -> dict[str, Any]:
        return {"publishable_key": self.publishable_key, "test_mode": self.test_mode}


def verify_event(payload: bytes, signature: str | None, secret: str, tolerance_s: int) -> dict[str, Any]:
    """The event in a webhook delivery, once `stripe.Webhook.construct_event` verified its `Stripe-Signature`
    (HMAC-SHA256 of `"{t}.{payload}"` with the endpoint's signing secret, `t` no older than `tolerance_s` by the
    system clock: this is a check of the message's freshness, not a business rule, so it uses real time). Raises
    `Invalid` (`bad_signature`, `stale_signature`, `invalid_event`)."""
    if not secret:
        raise Unavailable("webhooks are not configured", code="payments_unavailable")
    if not signature:
        raise Invalid("the Stripe-Signature header is missing", code="bad_signature")
    try:
        event = stripe.Webhook.construct_event(payload.decode("utf-8"), signature, secret, tolerance=tolerance_s)
    except stripe.SignatureVerificationError as err:
        if "tolerance" in str(err).lower():
            raise Invalid("the signature is too old", code="stale_signature") from None
        raise Invalid("the signature does not match", code="bad_signature") from None
    except (ValueError, TypeError, AttributeError, KeyError):  # signed, but not a JSON event object
        raise Invalid("the event is not a JSON event object", code="invalid_event") from None
    data = event.to_dict() if hasattr(event, "to_dict") else None
    if not isinstance(data, dict):
        raise Invalid("the event is not a JSON event object", code="invalid_event")
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str) or not isinstance(
            data.get("data"), dict) or not isinstance(data["data"].get("object"), dict):
        raise Invalid("the event lacks an id, a type or its object", code="invalid_event")
    return data
