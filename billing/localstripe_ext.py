"""A local Stripe-compatible server for tests and the embedded test mode: `localstripe` (PyPI) plus what it lacks.

Run it with `python -m billing.localstripe_ext --port 8420 [--webhook URL --webhook-secret whsec_...]`.

Added to localstripe, following Stripe's documented request and response shapes:
- **Idempotency keys** (`Idempotency-Key` header on POST): the first response to a key is saved and replayed (with
  `Idempotent-Replayed: true`) for any later request with that key; the same key with other parameters is refused
  (400, `idempotency_error`). Keys are scoped to the API key. (Stripe answers a request that arrives while the first
  with its key is still running with 409; here it waits for the first and gets its replay.)
- **Connect**: `POST /v1/accounts` (Express, Standard or Custom accounts), `GET /v1/accounts/{id}`,
  `POST /v1/account_links` (a link to a local stand-in for Stripe's hosted onboarding), `POST /v1/transfers`
  (to a connected account whose payouts are enabled), `GET /v1/transfers/{id}`.
- **Test helpers**, under `/_ext/`, doing what Stripe's dashboard or a cardholder's bank would:
  `GET|POST /_ext/onboarding/{account}` (the hosted onboarding stand-in: completing it enables payouts and sends
  `account.updated`), `POST /_ext/charges/{id}/dispute` (opens a dispute: `charge.dispute.created`),
  `POST /_ext/disputes/{id}/close` with `status=won|lost` (`charge.dispute.closed`).
- **Paying a PaymentIntent from the browser**, as Stripe.js does: `POST /v1/payment_intents/{id}/confirm` takes
  `payment_method_data` (a card) or `payment_method`, and, instead of a secret key, the publishable key (`key`) with
  the intent's `client_secret`. localstripe confirms only an intent made with a payment method and refuses both
  parameters ("Not implemented"). A refused card answers 402 with `type: card_error`, Stripe's `code` and message,
  and the intent; a later attempt with another card may follow (the intent is back to `requires_payment_method`).
- **Stripe's decline test cards decline when charged** (`4000 0000 0000 0002` and the others of `DECLINES`, with
  Stripe's codes and messages); localstripe declines them only when they are attached to a customer.
- **A Stripe.js stand-in that can do that** at `/js.stripe.com/v3/` (`localstripe_js/stripe-v3.js`, in place of
  localstripe's, whose `confirmCardPayment` ignores the card and can only answer a 3D Secure challenge): the card
  Element is an iframe from this server (`/js.stripe.com/v3/elements-inner-card.html`), so, as with Stripe, the
  page around it never holds the card, and the iframe confirms the intent itself.
- Webhooks are sent after `--webhook-delay` seconds (localstripe waits a whole second), signed as Stripe signs them;
  `DELETE /_config/webhooks/{id}` unregisters one. Nothing is written to disk (localstripe pickles its whole store to
  a shared file in /tmp after every change).

This is a development and test tool: it holds everything in memory and trusts any `sk_test_` key.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from localstripe import resources, server, webhooks
from localstripe.errors import UserError
from localstripe.resources import Charge, Event, PaymentIntent, PaymentMethod, StripeObject, schedule_webhook, store

log = logging.getLogger("localstripe_ext")
WEBHOOK_DELAY_S = 0.05
STAND_IN_DIR = Path(__file__).resolve().parent / "localstripe_js"


# ---------------------------------------------------------------- no disk, faster webhooks


def _no_disk(self: Any) -> None:
    return None


resources.Store.dump_to_disk = _no_disk  # type: ignore[method-assign]
resources.Store.try_load_from_disk = _no_disk  # type: ignore[method-assign]


async def _send_webhook(event: Event) -> None:
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode("utf-8")
    await asyncio.sleep(WEBHOOK_DELAY_S)
    for hook in list(webhooks._webhooks.values()):
        if hook.events is not None and event.type not in hook.events:
            continue
        timestamp = int(time.time())
        signature = hmac.new(hook.secret.encode("utf-8"), b"%d.%s" % (timestamp, payload), hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Stripe-Signature": f"t={timestamp},v1={signature}"}
        try:
            async with ClientSession(timeout=ClientTimeout(total=30)) as session:
                async with session.post(hook.url, data=payload, headers=headers) as response:
                    log.info("webhook %s -> %s", event.type, response.status)
        except (ClientError, asyncio.TimeoutError) as exc:
            log.info("webhook %s failed: %s", event.type, exc)


webhooks._send_webhook = _send_webhook


# ---------------------------------------------------------------- Stripe's decline test cards

#: Card number -> (code, message) of the charge's failure, as Stripe answers for its test cards
#: (https://docs.stripe.com/testing#declined-payments).
DECLINES = {
    "4000000000000002": ("card_declined", "Your card was declined."),
    "4000000000009995": ("card_declined", "Your card has insufficient funds."),
    "4000000000009987": ("card_declined", "Your card was declined."),
    "4000000000009979": ("card_declined", "Your card was declined."),
    "4000000000000069": ("expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": ("processing_error",
                         "An error occurred while processing your card. Try again in a little bit."),
    "4242424242424241": ("incorrect_number", "Your card number is incorrect."),
}
_charging_is_declined = PaymentMethod._charging_is_declined
_set_auth_failure = Charge._set_auth_failure


def _declined_when_charged(self: Any) -> bool:
    return getattr(self, "_card_number", None) in DECLINES or _charging_is_declined(self)


def _failure_of_card(self: Charge) -> None:
    _set_auth_failure(self)
    method = store.get("payment_method:" + str(self.payment_method))
    found = DECLINES.get(getattr(method, "_card_number", None) or "")
    if found:
        self.failure_code, self.failure_message = found


PaymentMethod._charging_is_declined = _declined_when_charged  # type: ignore[method-assign]
Charge._set_auth_failure = _failure_of_card  # type: ignore[method-assign]


# ---------------------------------------------------------------- Connect


def _bool(value: Any) -> Any:
    return resources.try_convert_to_bool(value)


class Account(StripeObject):
    object = "account"
    _id_prefix = "acct_"

    def __init__(self, type: str | None = None, country: str | None = None, email: str | None = None,
                 metadata: dict[str, str] | None = None, capabilities: dict[str, Any] | None = None,
                 business_type: str | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        if type not in ("express", "standard", "custom"):
            raise UserError(400, "Invalid type: must be one of express, standard, or custom",
                            {"param": "type", "code": "parameter_invalid_empty" if type is None else "invalid_type"})
        if metadata is not None and not isinstance(metadata, dict):
            raise UserError(400, "Invalid metadata", {"param": "metadata"})
        super().__init__()
        self.type = type
        self.country = country or "GB"
        self.email = email
        self.business_type = business_type
        self.metadata = metadata or {}
        self.default_currency = "gbp"
        self.charges_enabled = False
        self.payouts_enabled = False
        self.details_submitted = False
        requested = capabilities or {}
        self.capabilities = {name: "inactive" for name in requested}
        self.requirements = {"currently_due": ["external_account", "tos_acceptance.date"], "disabled_reason":
                             "requirements.past_due", "eventually_due": [], "past_due": [], "pending_verification": []}

    def _complete_onboarding(self) -> None:
        self.charges_enabled = self.payouts_enabled = self.details_submitted = True
        self.capabilities = {name: "active" for name in (self.capabilities or {"transfers": "active"})}
        self.requirements = {"currently_due": [], "disabled_reason": None, "eventually_due": [], "past_due": [],
                             "pending_verification": []}
        schedule_webhook(Event("account.updated", self))


class Transfer(StripeObject):
    object = "transfer"
    _id_prefix = "tr_"

    def __init__(self, amount: Any = None, currency: str | None = None, destination: str | None = None,
                 metadata: dict[str, str] | None = None, description: str | None = None,
                 transfer_group: str | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        amount = resources.try_convert_to_int(amount)
        if type(amount) is not int or amount <= 0:
            raise UserError(400, "Invalid positive integer", {"param": "amount"})
        if not isinstance(currency, str) or not currency:
            raise UserError(400, "Missing required param: currency.", {"param": "currency"})
        if not isinstance(destination, str) or not destination.startswith("acct_"):
            raise UserError(400, "Missing required param: destination.", {"param": "destination"})
        account = store.get("account:" + destination)
        if account is None:
            raise UserError(400, f"No such destination: '{destination}'", {"param": "destination",
                                                                            "code": "resource_missing"})
        if not account.payouts_enabled:
            raise UserError(400, "Your destination account needs to have at least one of the following capabilities "
                            "enabled: transfers, crypto_transfers, legacy_payments", {"param": "destination"})
        super().__init__()
        self.amount = amount
        self.amount_reversed = 0
        self.currency = currency
        self.destination = destination
        self.description = description
        self.metadata = metadata or {}
        self.reversed = False
        self.transfer_group = transfer_group


class Dispute(StripeObject):
    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge: Charge, amount: int, reason: str = "fraudulent") -> None:
        super().__init__()
        self.amount = amount
        self.charge = charge.id
        self.payment_intent = charge.payment_intent
        self.currency = charge.currency
        self.reason = reason
        self.status = "needs_response"
        self.metadata: dict[str, str] = {}
        self.is_charge_refundable = False


def _account_link(request: web.Request, data: dict[str, Any]) -> web.Response:
    account = data.get("account")
    if not isinstance(account, str) or store.get("account:" + account) is None:
        raise UserError(400, f"No such account: '{account}'", {"param": "account", "code": "resource_missing"})
    for param in ("refresh_url", "return_url"):
        if not isinstance(data.get(param), str) or not data[param].startswith("http"):
            raise UserError(400, f"Missing required param: {param}.", {"param": param})
    if data.get("type") not in ("account_onboarding", "account_update"):
        raise UserError(400, "Invalid type", {"param": "type"})
    now = int(time.time())
    origin = f"{request.url.scheme}://{request.host}"
    url = f"{origin}/_ext/onboarding/{account}?return_url={quote(data['return_url'], safe='')}"
    return server.json_response({"object": "account_link", "created": now, "expires_at": now + 300, "url": url})


async def create_account_link(request: web.Request) -> web.Response:
    return _account_link(request, await server.get_post_data(request) or {})


async def onboarding_page(request: web.Request) -> web.StreamResponse:
    """The stand-in for Stripe's hosted onboarding: one button that completes it (test mode only)."""
    account: Account | None = store.get("account:" + request.match_info["id"])
    if account is None:
        raise UserError(404, "Not Found")
    back = request.query.get("return_url", "")
    if request.method == "POST":
        account._complete_onboarding()
        if back.startswith("http"):
            raise web.HTTPSeeOther(back)
        return server.json_response(account._export())
    page = (f"<!doctype html><title>Stripe onboarding (local test mode)</title><h1>Stripe onboarding: test mode</h1>"
            f"<p>This stands in for Stripe's hosted onboarding of {html.escape(account.id)}. No real account is made.</p>"
            f"<form method=post><button>Complete onboarding</button></form>")
    return web.Response(text=page, content_type="text/html")


async def open_dispute(request: web.Request) -> web.Response:
    charge = Charge._api_retrieve(request.match_info["id"])
    data = await server.get_post_data(request) or {}
    amount = resources.try_convert_to_int(data.get("amount", charge.amount))
    if type(amount) is not int or not 0 < amount <= charge.amount:
        raise UserError(400, "Invalid amount", {"param": "amount"})
    dispute = Dispute(charge, amount, str(data.get("reason", "fraudulent")))
    schedule_webhook(Event("charge.dispute.created", dispute))
    return server.json_response(dispute._export())


async def close_dispute(request: web.Request) -> web.Response:
    dispute: Dispute | None = store.get("dispute:" + request.match_info["id"])
    if dispute is None:
        raise UserError(404, "Not Found")
    data = await server.get_post_data(request) or {}
    if data.get("status") not in ("won", "lost"):
        raise UserError(400, "status must be won or lost", {"param": "status"})
    dispute.status = data["status"]
    schedule_webhook(Event("charge.dispute.closed", dispute))
    return server.json_response(dispute._export())


async def delete_webhook(request: web.Request) -> web.Response:
    webhooks._webhooks.pop(request.match_info["id"], None)
    return web.Response()


# ---------------------------------------------------------------- paying a PaymentIntent from the browser

CONFIRM_PATH = re.compile(r"^/v1/payment_intents/(\w+)/confirm$")
#: Parameters of a confirmation that change nothing here (there is no redirect, no saved card, no receipt).
IGNORED_CONFIRM_PARAMS = ("return_url", "use_stripe_sdk", "setup_future_usage", "receipt_email", "expand")


def _publishable(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("key"), str) and data["key"].startswith("pk_")


async def confirm_payment_intent(request: web.Request) -> web.Response:
    """`POST /v1/payment_intents/{id}/confirm` as Stripe does it: with the secret key, or with the publishable key and
    the intent's client secret (Stripe.js); with a new card (`payment_method_data`) or payment method, or none."""
    data = await server.get_post_data(request, remove_auth=False) or {}
    if not isinstance(data, dict):
        raise UserError(400, "Bad request")
    by_browser = server.get_api_key(request) is None
    for param in ("key", "payment_user_agent", "referrer"):
        data.pop(param, None)
    secret = data.pop("client_secret", None)
    match = CONFIRM_PATH.match(request.path)
    intent: PaymentIntent | None = store.get("payment_intent:" + match[1]) if match else None
    if intent is None or (by_browser and secret != intent.client_secret):
        # Stripe says the same whether the intent is missing or the secret wrong
        raise UserError(404, "No such payment_intent", {"code": "resource_missing", "param": "intent"})
    for param in IGNORED_CONFIRM_PARAMS:
        data.pop(param, None)
    method_data, method_id = data.pop("payment_method_data", None), data.pop("payment_method", None)
    if data:
        raise UserError(400, "Received unknown parameter: " + ", ".join(sorted(data)))
    if method_data is not None and method_id is not None:
        raise UserError(400, "You cannot pass both payment_method and payment_method_data.")
    if method_data is not None:
        if not isinstance(method_data, dict):
            raise UserError(400, "Invalid payment_method_data", {"param": "payment_method_data"})
        method_id = PaymentMethod(**method_data).id
    elif method_id is not None:
        PaymentMethod._api_retrieve(method_id)
    if method_id is not None:
        if intent.status not in ("requires_payment_method", "requires_confirmation"):
            raise UserError(400, f"You cannot confirm this PaymentIntent because it has a status of {intent.status}.",
                            {"code": "payment_intent_unexpected_state"})
        intent.payment_method, intent.latest_charge, intent._authentication_failed = method_id, None, False
    if intent.status != "requires_confirmation":
        raise UserError(400, f"You cannot confirm this PaymentIntent because it has a status of {intent.status}.",
                        {"code": "payment_intent_unexpected_state"})
    try:
        intent._confirm(on_failure_now=intent._report_failure)
    except UserError as err:
        if err.code == 402:
            err.body["error"].update(type="card_error", payment_intent=intent._export())
        raise
    return server.json_response(intent._export())


def stand_in_file(name: str, content_type: str) -> Any:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=(STAND_IN_DIR / name).read_text(), content_type=content_type,
                            headers={"Cache-Control": "no-cache"})

    return serve


#: Routes localstripe has but implements too little of, answered here instead: (method, path pattern) -> handler.
OVERRIDES = (
    ("GET", re.compile(r"^/js\.stripe\.com/v3/?$"), stand_in_file("stripe-v3.js", "application/javascript")),
    ("POST", CONFIRM_PATH, confirm_payment_intent),
)


@web.middleware
async def overrides(request: web.Request, handler: Any) -> web.StreamResponse:
    for method, pattern, replacement in OVERRIDES:
        if request.method == method and pattern.match(request.path):
            return await replacement(request)
    return await handler(request)


# ---------------------------------------------------------------- idempotency keys


class _Saved:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.fingerprint: str | None = None
        self.response: tuple[int, bytes, str] | None = None


_saved: dict[str, _Saved] = {}


@web.middleware
async def idempotency(request: web.Request, handler: Any) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key or not request.path.startswith("/v1/"):
        return await handler(request)
    scope = f"{server.get_api_key(request)}:{key}"
    body = await request.read()
    fingerprint = hashlib.sha256(request.path.encode() + b"\0" + body).hexdigest()
    saved = _saved.setdefault(scope, _Saved())
    async with saved.lock:
        if saved.response is not None:
            if saved.fingerprint != fingerprint:
                return server.json_response({"error": {
                    "type": "idempotency_error",
                    "message": "Keys for idempotent requests can only be used with the same parameters they were first "
                               f"used with. Try using a key other than '{key}' if you meant to execute a different "
                               "request."}}, status=400)
            status, payload, content_type = saved.response
            response = web.Response(body=payload, status=status, content_type=content_type)
            response.headers["Idempotent-Replayed"] = "true"
            response.headers["Idempotency-Key"] = key
            return response
        try:
            response = await handler(request)
        except UserError as err:
            response = err.to_response()
        if isinstance(response, web.Response) and response.status < 500 and response.body is not None:
            saved.fingerprint = fingerprint
            saved.response = (response.status, bytes(response.body), response.content_type)  # type: ignore[arg-type]
        response.headers["Idempotency-Key"] = key
        return response


# ---------------------------------------------------------------- the application


def build_app() -> web.Application:
    app = server.app
    if not getattr(app, "_ext_installed", False):
        app.middlewares.insert(1, idempotency)  # after localstripe's error middleware, before its auth check
        router = app.router
        router.add_post("/v1/accounts", server.api_create(Account, "/v1/accounts"))
        router.add_get("/v1/accounts/{id}", server.api_retrieve(Account, "/v1/accounts/{id}"))
        router.add_get("/v1/accounts", server.api_list_all(Account, "/v1/accounts"))
        router.add_post("/v1/account_links", create_account_link)
        router.add_post("/v1/transfers", server.api_create(Transfer, "/v1/transfers"))
        router.add_get("/v1/transfers/{id}", server.api_retrieve(Transfer, "/v1/transfers/{id}"))
        router.add_route("GET", "/_ext/onboarding/{id}", onboarding_page)
        router.add_route("POST", "/_ext/onboarding/{id}", onboarding_page)
        router.add_post("/_ext/charges/{id}/dispute", open_dispute)
        router.add_post("/_ext/disputes/{id}/close", close_dispute)
        router.add_delete("/_config/webhooks/{id}", delete_webhook)
        router.add_get("/js.stripe.com/v3/elements-inner-card.html",
                       stand_in_file("elements-inner-card.html", "text/html"))
        router.add_get("/js.stripe.com/v3/card-frame.js", stand_in_file("card-frame.js", "application/javascript"))
        auth = _exempt_from_auth()
        app.middlewares.insert(list(app.middlewares).index(auth) + 1, overrides)
        app._ext_installed = True  # type: ignore[attr-defined]
    return app


def _exempt_from_auth() -> Any:
    """localstripe's auth check lets `/_config/` through; the onboarding page is opened by a browser without a key, and
    Stripe.js confirms a PaymentIntent with the publishable key (the handler then checks the client secret)."""
    original = server.auth_middleware

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_ext/onboarding/"):
            return await handler(request)
        if request.method == "POST" and CONFIRM_PATH.match(request.path) and server.get_api_key(request) is None and \
                _publishable(await server.get_post_data(request, remove_auth=False)):
            return await handler(request)
        return await original(request, handler)

    index = list(server.app.middlewares).index(original)
    server.app.middlewares[index] = auth
    return auth


def main(argv: list[str] | None = None) -> None:
    global WEBHOOK_DELAY_S
    parser = argparse.ArgumentParser(prog="python -m billing.localstripe_ext", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--webhook", help="URL to send webhooks to")
    parser.add_argument("--webhook-secret", help="the signing secret for --webhook")
    parser.add_argument("--webhook-delay", type=float, default=WEBHOOK_DELAY_S)
    args = parser.parse_args(argv)
    WEBHOOK_DELAY_S = args.webhook_delay
    if args.webhook:
        if not args.webhook_secret:
            parser.error("--webhook needs --webhook-secret")
        webhooks.register_webhook("default", args.webhook, args.webhook_secret, None)
    logging.basicConfig(level=logging.WARNING)
    app = build_app()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
