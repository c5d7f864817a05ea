"""Helpers shared by the billing tests: the local Stripe-compatible server (localstripe plus `billing.localstripe_ext`,
started once per test session on a free loopback port), a server wired to it, Stripe-style webhook signing, calls
between a client and a therapist, and reads of the ledger.

Import the fixtures you use into the test module (`from billing_support import billing, ...`), as the accounts tests
do with `accounts_api`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator

import aiohttp
import pytest
import stripe
from sqlalchemy import func, select

from conftest import ROOT, RunningServer, Sock, User, Users, free_port, open_call, start_server
from core.clock import FrozenClock
from core.settings import Settings

WEBHOOK_SECRET = "whsec_test_" + "s" * 24
STRIPE_KEY = "sk_test_billing_tests"
VISA = "4242424242424242"
DECLINED = "4000000000000341"  # attaches, then the charge is declined (localstripe's list)
RATE = 100  # the test therapists' rate, pence per minute


@dataclass
class LocalStripe:
    url: str

    @asynccontextmanager
    async def client(self) -> AsyncIterator[stripe.StripeClient]:
        """A Stripe client for the test's own calls (what Stripe.js does in the browser, the dashboard's actions)."""
        http = stripe.AIOHTTPClient()
        try:
            yield stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.url, "connect": self.url},
                                      http_client=http)  # type: ignore[arg-type]
        finally:
            await http.close_async()


@pytest.fixture(scope="session")
def local_stripe() -> Iterator[LocalStripe]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "billing.localstripe_ext", "--port", str(port), "--webhook-delay", "0"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the local Stripe server did not start")
            time.sleep(0.05)
    try:
        yield LocalStripe(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(10)


def billing_settings(make_settings: Callable[..., Settings], stripe_url: str, **overrides: Any) -> Settings:
    return make_settings(**{
        "billing_charge_calls": True, "stripe_secret_key": STRIPE_KEY, "stripe_publishable_key": "pk_test_billing",
        "stripe_api_base": stripe_url, "stripe_webhook_secret": WEBHOOK_SECRET, "billing_tick_interval_s": 3600,
        **overrides})


async def _register_webhook(http: aiohttp.ClientSession, stripe_url: str, server_url: str) -> str:
    hook_id = uuid.uuid4().hex[:12]
    async with http.post(f"{stripe_url}/_config/webhooks/{hook_id}",
                         data={"url": f"{server_url}/api/billing/stripe/webhook", "secret": WEBHOOK_SECRET}) as resp:
        assert resp.status == 200, await resp.text()
    return hook_id


@pytest.fixture
async def billing(make_settings: Callable[..., Settings], clock: FrozenClock, local_stripe: LocalStripe,
                  http: aiohttp.ClientSession) -> AsyncIterator[RunningServer]:
    """The whole app on SQLite with calls charged and Stripe at the local server, whose webhooks come back to it."""
    running = await start_server(billing_settings(make_settings, local_stripe.url), clock=clock)
    hook = await _register_webhook(http, local_stripe.url, running.url)
    try:
        yield running
    finally:
        async with http.delete(f"{local_stripe.url}/_config/webhooks/{hook}"):
            pass
        await running.runner.cleanup()


@pytest.fixture
async def any_db_billing(database_url: str, make_settings: Callable[..., Settings], clock: FrozenClock,
                         local_stripe: LocalStripe) -> AsyncIterator[RunningServer]:
    """The app on SQLite, then on PostgreSQL, with Stripe at the local server (webhooks are sent by the test)."""
    running = await start_server(billing_settings(make_settings, local_stripe.url, database_url=database_url), clock=clock)
    try:
        yield running
    finally:
        await running.runner.cleanup()


@pytest.fixture
def people(billing: RunningServer, http: aiohttp.ClientSession) -> Users:
    """Users whose clients start with an empty wallet: these tests count every penny."""
    return Users(billing, http, client_balance_pence=0)


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header made the way Stripe makes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(kind: str, obj: dict[str, Any], event_id: str | None = None, created: int | None = None) -> bytes:
    return json.dumps({
        "id": event_id or "evt_" + uuid.uuid4().hex[:14], "object": "event", "type": kind, "api_version": "2024-06-20",
        "created": created or int(time.time()), "livemode": False, "data": {"object": obj},
    }).encode()


async def deliver(http: aiohttp.ClientSession, server: RunningServer, payload: bytes, signature: str | None = "sign",
                  ) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature == "sign":
        headers["Stripe-Signature"] = sign(payload)
    elif signature is not None:
        headers["Stripe-Signature"] = signature
    async with http.post(f"{server.url}/api/billing/stripe/webhook", data=payload, headers=headers) as resp:
        return resp.status, await resp.json()


async def call_api(http: aiohttp.ClientSession, server: RunningServer, method: str, path: str, user: User | None = None,
                   body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    all_headers = {**(user.headers if user else {}), **(headers or {})}
    async with http.request(method, server.url + path, json=body, headers=all_headers) as resp:
        data = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, data


def code_of(body: Any) -> str | None:
    return body["error"]["code"] if isinstance(body, dict) and "error" in body else None


async def credit(server: RunningServer, user: User, pence: int) -> int:
    """Money in the client's wallet through the ledger (as tests, benchmarks and the load-test tool do)."""
    from billing.wallet import credit_wallet

    svc = server.services
    return await credit_wallet(svc.db, svc.clock, user.id, pence, key=uuid.uuid4().hex)


async def balance_of(server: RunningServer, account: Any) -> int:
    from billing import ledger

    async with server.services.db.session() as session:
        return await ledger.balance(session, account)


async def ledger_is_consistent(server: RunningServer) -> None:
    """Every transaction sums to zero, and no account that holds people's money is below zero."""
    from billing import ledger
    from billing.models import LedgerAccount, LedgerEntry

    async with server.services.db.session() as session:
        unbalanced = (await session.execute(
            select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
            .having(func.sum(LedgerEntry.amount_pence) != 0))).all()
        assert unbalanced == []
        rows = (await session.execute(
            select(LedgerAccount.kind, func.sum(LedgerEntry.amount_pence))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id).group_by(LedgerAccount.id))).all()
        for kind, total in rows:
            if kind in ledger.NON_NEGATIVE:
                assert total >= 0, f"{kind.value} went negative: {total}"


async def confirm_card(local_stripe: LocalStripe, intent_id: str, card: str = VISA) -> Any:
    """What Stripe.js does in the browser: a card payment method, attached to the intent, confirmed."""
    async with local_stripe.client() as client:
        method = await client.v1.payment_methods.create_async(
            {"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        await client.v1.payment_intents.update_async(intent_id, {"payment_method": method.id})
        try:
            return await client.v1.payment_intents.confirm_async(intent_id)
        except stripe.CardError as err:
            return err


async def quick_connect_call(server: RunningServer, therapist: User, client: User) -> int:
    return await open_call(server, therapist, client, recording_consent=False)


async def join_both(sockets: Callable[..., Any], server: RunningServer, therapist: User, client: User,
                    call_id: int) -> tuple[Sock, Sock]:
    t_sock, c_sock = await sockets(server, therapist, "therapist"), await sockets(server, client, "client")
    for sock in (t_sock, c_sock):
        ack = await sock.call("call.join", {"call_id": call_id})
        assert ack["ok"], ack
    for sock in (t_sock, c_sock):
        await media_connected(sock, call_id)
    return t_sock, c_sock


async def media_connected(sock: Sock, call_id: int, connected: bool = True) -> None:
    """What the browser reports when its peer connection to the other member comes up (or goes down)."""
    ack = await sock.call("call.media_state", {"call_id": call_id, "connected": connected})
    assert ack["ok"], ack


async def tick(server: RunningServer, *, sweep: bool = False) -> list[Any]:
    """One pass of the meter ticker: the meters that came due (and, with `sweep`, every open meter)."""
    from billing import metering

    return await metering.tick(server.services.billing, sweep=sweep)


async def earn(server: RunningServer, therapist: User, pence: int) -> None:
    """Available earnings for a therapist, straight through the ledger (the calls tests earn them for real)."""
    from billing import ledger

    svc = server.services
    await ledger.run_once(svc.db, lambda s: ledger.post(
        s, key=f"test-earnings:{uuid.uuid4().hex}", kind="settlement", now=svc.clock.now(),
        legs=[(ledger.CARD_CLEARING, -pence), (ledger.available(therapist.id), pence)]))


async def outbox_for(server: RunningServer, recipient: str, kind: str | None = None) -> list[Any]:
    from messaging.outbox import messages_for

    svc = server.services
    async with svc.db.session() as session:
        return await messages_for(session, svc.keyring, recipient, kind)


async def audits(server: RunningServer, action: str, subject_id: object | None = None) -> list[Any]:
    from core.audit import AuditEvent

    async with server.services.db.session() as session:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        if subject_id is not None:
            query = query.where(AuditEvent.subject_id == str(subject_id))
        return list((await session.scalars(query)).all())


async def signed_in_again(http: aiohttp.ClientSession, server: RunningServer, user: User) -> User:
    """The same user with a fresh token (after the test moved the clock past the old one's expiry)."""
    from conftest import PASSWORD

    async with http.post(f"{server.url}/api/auth/signin", json={"email": user.email, "password": PASSWORD}) as resp:
        assert resp.status == 200
        return User(user.id, user.email, (await resp.json())["token"], user.role)


async def paid_top_up(http: aiohttp.ClientSession, server: RunningServer, local_stripe: LocalStripe, client: User,
                      pence: int) -> dict[str, Any]:
    """A top-up paid by card at the local Stripe, its webhook delivered and the wallet credited; the top-up's row."""
    from billing.models import TopUp
    from conftest import wait_for

    status, body = await call_api(http, server, "POST", "/api/billing/topups", client, {"amount_pence": pence})
    assert status == 201, body
    confirmed = await confirm_card(local_stripe, body["client_secret"].split("_secret_")[0])
    assert confirmed.status == "succeeded"

    async def credited() -> TopUp | None:
        async with server.services.db.session() as session:
            row = await session.get(TopUp, body["topup"]["id"])
            return row if row is not None and row.status.value == "succeeded" else None

    row = await wait_for(credited, timeout=10)
    return {"id": row.id, "payment_intent": row.payment_intent_id, "charge": row.charge_id}
