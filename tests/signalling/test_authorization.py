"""Authorisation, driven by the registries: every HTTP route and Socket.IO event must be listed here with its access
level, and is tried by every kind of party. A new route or event without an entry fails this suite."""

from __future__ import annotations

from typing import Any, Callable

import aiohttp
import pytest

from conftest import PASSWORD, RunningServer, Sock, User, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings
from signalling.access import Access
from signalling.sockets import EVENTS

ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/healthz"): Access.public,
    ("GET", "/metrics"): Access.operator,
    ("POST", "/api/auth/register"): Access.public,
    ("POST", "/api/auth/apply"): Access.public,
    ("POST", "/api/auth/signin"): Access.public,
    ("POST", "/api/auth/signout"): Access.user,
    ("POST", "/api/auth/refresh"): Access.user,
    ("POST", "/api/auth/verify-email"): Access.public,
    ("POST", "/api/auth/resend-verification"): Access.user,
    ("POST", "/api/auth/password-reset"): Access.public,
    ("POST", "/api/auth/password-reset/confirm"): Access.public,
    ("GET", "/api/me"): Access.user,
    ("PATCH", "/api/me"): Access.user,
    ("PUT", "/api/me/availability"): Access.approved_therapist,
    ("PUT", "/api/me/picture"): Access.therapist,
    ("DELETE", "/api/me/picture"): Access.therapist,
    ("GET", "/api/therapists/{id}/picture"): Access.user,
    ("POST", "/api/me/guardian-consent-request"): Access.client,
    ("POST", "/api/guardian-consent/details"): Access.public,
    ("POST", "/api/guardian-consent/confirm"): Access.public,
    ("POST", "/api/therapist/referral-codes"): Access.approved_therapist,
    ("GET", "/api/therapist/referral-codes"): Access.therapist,
    ("DELETE", "/api/therapist/referral-codes/{code}"): Access.therapist,
    ("GET", "/api/admin/applications"): Access.admin,
    ("POST", "/api/admin/applications/{id}/approve"): Access.admin,
    ("POST", "/api/admin/applications/{id}/refuse"): Access.admin,
    ("POST", "/api/admin/clients/{id}/guardian-consent"): Access.admin,
    ("GET", "/api/calls"): Access.user,
    ("GET", "/api/calls/{id}"): Access.user,
    ("GET", "/api/calls/{id}/notes"): Access.therapist,
    ("PUT", "/api/calls/{id}/notes"): Access.therapist,
    ("GET", "/api/clients"): Access.therapist,
    ("POST", "/api/admin/test-calls"): Access.admin,
    ("GET", "/api/calls/{id}/transcript"): Access.user,
    ("GET", "/api/transcripts/search"): Access.therapist,
    ("GET", "/api/calls/{id}/recordings"): Access.therapist,
    ("GET", "/api/calls/{id}/recordings/{recording_id}"): Access.therapist,
    # billing (signalling/routes/billing.py)
    ("GET", "/api/billing/wallet"): Access.client,
    ("POST", "/api/billing/topups"): Access.client,
    ("GET", "/api/billing/topups/{id}"): Access.client,
    ("POST", "/api/billing/refunds"): Access.client,
    ("GET", "/api/billing/transactions"): Access.user,
    ("GET", "/api/billing/transactions.csv"): Access.user,
    ("GET", "/api/billing/earnings"): Access.therapist,
    ("GET", "/api/billing/withdrawals"): Access.therapist,
    ("POST", "/api/billing/withdrawals"): Access.therapist,
    ("POST", "/api/billing/withdrawals/{id}/cancel"): Access.therapist,
    ("GET", "/api/billing/connect"): Access.therapist,
    ("POST", "/api/billing/connect/onboarding"): Access.approved_therapist,
    ("POST", "/api/billing/stripe/webhook"): Access.public,
    ("GET", "/api/admin/billing/withdrawals"): Access.admin,
    ("POST", "/api/admin/billing/withdrawals/{id}/invoice-received"): Access.admin,
    ("POST", "/api/admin/billing/withdrawals/{id}/pay"): Access.admin,
    ("POST", "/api/admin/billing/withdrawals/{id}/cancel"): Access.admin,
    ("GET", "/api/admin/billing/calls/{id}"): Access.admin,
    ("POST", "/api/admin/billing/calls/{id}/refunds"): Access.admin,
    ("GET", "/api/admin/billing/disputes"): Access.admin,
    ("POST", "/api/admin/billing/clients/{id}/credits"): Access.admin,
}
#: Infrastructure, not application endpoints: the page shell, static files and the Socket.IO transport itself.
INFRASTRUCTURE = {("GET", "/"), ("GET", "/static"), ("GET", "/socket.io/"), ("POST", "/socket.io/"), ("OPTIONS", "/socket.io/")}
#: The browser client's pages (static HTML, public: they hold no data) and its npm packages (signalling/routes/pages.py);
#: the vendor folder is a static route, or a route that answers 503 while `npm ci` has not run.
INFRASTRUCTURE |= {("GET", path) for path in (
    "/signin", "/verify-email", "/reset-password", "/guardian-consent", "/dashboard", "/home", "/calls", "/calls/{id}",
    "/call/{id}", "/admin", "/admin/billing", "/wallet", "/earnings", "/vendor/socket.io-client",
    "/vendor/socket.io-client/{path}")}

EVENT_ACCESS: dict[str, Access] = {
    "session.whoami": Access.user,
    "session.ping": Access.user,
    "pool.request": Access.client,
    "pool.cancel": Access.client,
    "pool.respond": Access.client,
    "pool.state": Access.client,
    "pool.snapshot": Access.approved_therapist,
    "pool.accept": Access.approved_therapist,
    "pool.set_availability": Access.approved_therapist,
    "call.join": Access.user,
    "call.signal": Access.user,
    "call.media_state": Access.user,
    "call.chat": Access.user,
    "call.notes.save": Access.therapist,
    "call.notes.get": Access.therapist,
    "call.hangup": Access.user,
    "call.media.offer": Access.user,
    "call.media.close": Access.user,
    "call.recording.withdraw": Access.user,
}

PARTIES = ("anonymous", "client", "pending_therapist", "therapist", "admin")
ALLOWED: dict[Access, set[str]] = {
    Access.public: set(PARTIES),
    Access.user: {"client", "pending_therapist", "therapist", "admin"},
    Access.client: {"client"},
    Access.therapist: {"pending_therapist", "therapist"},
    Access.approved_therapist: {"therapist"},
    Access.admin: {"admin"},
}
DENIED_CODES = {"forbidden", "not_approved", "invalid_token", "unauthorized"}


def registered_routes(server: RunningServer) -> dict[tuple[str, str], Any]:
    out = {}
    for route in server.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        out[(route.method, route.resource.canonical)] = route.handler
    return out


def test_every_route_and_event_is_listed_with_its_declared_access(server: RunningServer) -> None:
    routes = registered_routes(server)
    unlisted = set(routes) - set(ROUTES) - INFRASTRUCTURE
    assert not unlisted, f"routes without an authorisation entry: {sorted(unlisted)}"
    assert not set(ROUTES) - set(routes), f"listed routes that do not exist: {sorted(set(ROUTES) - set(routes))}"
    for key, expected in ROUTES.items():
        assert getattr(routes[key], "access", None) is expected, f"{key} declares {getattr(routes[key], 'access', None)}"
    assert set(EVENTS.events) == set(EVENT_ACCESS), "every Socket.IO event needs an authorisation entry"
    for name, expected in EVENT_ACCESS.items():
        assert EVENTS.events[name].access is expected, name


@pytest.fixture
async def guarded_server(make_settings: Callable[..., Settings], clock: FrozenClock) -> Any:
    running = await start_server(make_settings(metrics_token="operator-token-123"), clock=clock)
    try:
        yield running
    finally:
        await running.runner.cleanup()


async def make_parties(server: RunningServer, http: aiohttp.ClientSession) -> dict[str, User]:
    users = Users(server, http)
    return {
        "client": await users.client(),
        "pending_therapist": await users.therapist(approved=False),
        "therapist": await users.therapist(),
        "admin": await users.admin(),
    }


async def fresh_token(server: RunningServer, http: aiohttp.ClientSession, user: User) -> str:
    async with http.post(f"{server.url}/api/auth/signin", json={"email": user.email, "password": PASSWORD}) as resp:
        assert resp.status == 200
        return (await resp.json())["token"]


async def test_every_route_refuses_the_wrong_party(guarded_server: RunningServer, http: aiohttp.ClientSession) -> None:
    server = guarded_server
    parties = await make_parties(server, http)
    for (method, path), access in ROUTES.items():
        url = server.url + path.replace("{id}", str(parties["client"].id)).replace("{code}", "ABCDEFGH").replace(
            "{recording_id}", "1")
        for party in PARTIES:
            headers = {}
            if party != "anonymous":
                headers["Authorization"] = f"Bearer {await fresh_token(server, http, parties[party])}"
            if access is Access.operator:
                allowed = False
            else:
                allowed = party in ALLOWED[access]
            async with http.request(method, url, headers=headers, json={} if method != "GET" else None) as resp:
                body = await resp.json() if resp.content_type == "application/json" else {}
                code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            where = f"{method} {path} as {party}"
            if allowed:
                assert code not in DENIED_CODES, f"{where} was refused ({resp.status} {code})"
            else:
                assert resp.status in (401, 403) and code in DENIED_CODES, f"{where} was let through ({resp.status} {code})"
    async with http.get(f"{server.url}/metrics", headers={"Authorization": "Bearer operator-token-123"}) as resp:
        assert resp.status == 200 and "http_requests_total" in await resp.text()


async def test_every_event_refuses_the_wrong_party(server: RunningServer, http: aiohttp.ClientSession, sockets) -> None:
    parties = await make_parties(server, http)
    socks: dict[str, Sock] = {}
    for party, user in parties.items():
        socks[party] = await sockets(server, user, party)
    for name, access in EVENT_ACCESS.items():
        for party, sock in socks.items():
            ack = await sock.call(name, {"request_id": 999999})
            code = None if ack.get("ok") else ack["error"]["code"]
            if party in ALLOWED[access]:
                assert code not in DENIED_CODES, f"{name} refused {party}: {code}"
            else:
                assert code in DENIED_CODES, f"{name} let {party} through: {ack}"


async def test_therapists_never_see_each_others_offers(server: RunningServer, users: Users, sockets) -> None:
    one, two = await sockets(server, await users.therapist()), await sockets(server, await users.therapist())
    for sock in (one, two):
        await sock.call("pool.set_availability", {"available": True})
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "private"}))["request"]["id"]
    assert (await one.call("pool.accept", {"request_id": request_id}))["ok"]
    assert (await two.call("pool.snapshot"))["offers"] == []
    assert [o["request"]["id"] for o in (await one.call("pool.snapshot"))["offers"]] == [request_id]
    assert two.received("pool.offer_updated") == []
    assert (await client.call("pool.respond", {"request_id": request_id, "accept": False}))["ok"]
    assert two.received("pool.offer_updated") == [], "the other therapist is not told about someone else's offer"


async def test_a_client_cannot_touch_another_clients_request(server: RunningServer, users: Users, sockets) -> None:
    owner, stranger = await sockets(server, await users.client()), await sockets(server, await users.client())
    request_id = (await owner.call("pool.request", {"reason": "mine"}))["request"]["id"]
    assert (await stranger.call("pool.cancel", {"request_id": request_id}))["error"]["code"] == "not_found"
    assert (await stranger.call("pool.respond", {"request_id": request_id, "accept": False}))["error"]["code"] == "not_found"
    assert (await stranger.call("pool.state"))["request"] is None
