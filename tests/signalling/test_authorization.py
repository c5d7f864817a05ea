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
    ("POST", "/api/me/password"): Access.user,
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
#: Events about one request, with a well-formed payload naming a request that does not exist: `not_found`.
UNKNOWN_REQUEST_PAYLOADS: dict[str, dict[str, Any]] = {
    "pool.accept": {"request_id": 999999},
    "pool.cancel": {"request_id": 999999},
    "pool.respond": {"request_id": 999999, "accept": False},
}


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
            ack = await sock.call(name, UNKNOWN_REQUEST_PAYLOADS.get(name, {"request_id": 999999}))
            code = None if ack.get("ok") else ack["error"]["code"]
            if party in ALLOWED[access]:
                assert code not in DENIED_CODES, f"{name} refused {party}: {code}"
                assert code != "internal", f"{name} failed for {party}: {ack}"
                if name in UNKNOWN_REQUEST_PAYLOADS:
                    assert code == "not_found", f"{name} about a request that does not exist, as {party}: {ack}"
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
    # the request, back in the pool, reaches `two` after anything the decline could have sent them
    await two.next("pool.request_added", lambda d: len(two.received("pool.request_added")) == 2)
    assert two.received("pool.offer_updated") == [], "the other therapist is not told about someone else's offer"


async def test_a_client_cannot_touch_another_clients_request(server: RunningServer, users: Users, sockets) -> None:
    owner, stranger = await sockets(server, await users.client()), await sockets(server, await users.client())
    request_id = (await owner.call("pool.request", {"reason": "mine"}))["request"]["id"]
    assert (await stranger.call("pool.cancel", {"request_id": request_id}))["error"]["code"] == "not_found"
    assert (await stranger.call("pool.respond", {"request_id": request_id, "accept": False}))["error"]["code"] == "not_found"
    assert (await stranger.call("pool.state"))["request"] is None


# ---------------------------------------------------------------- calls: parties who are not in the call

CALL_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
#: A valid payload (besides `call_id`) for every call event, so a refusal is about who asks, not what they send. A new
#: `call.*` event without an entry here fails `test_no_call_event_or_route_lets_an_outsider_in`.
CALL_EVENT_PAYLOADS: dict[str, dict[str, Any]] = {
    "call.join": {},
    "call.signal": {"kind": "offer", "sdp": CALL_SDP},
    "call.media_state": {"connected": True},
    "call.chat": {"text": "let me in"},
    "call.notes.save": {"text": "overwritten by an outsider"},
    "call.notes.get": {},
    "call.hangup": {},
    "call.media.offer": {"sdp": CALL_SDP},
    "call.media.close": {},
    "call.recording.withdraw": {},
}
#: Every route under /api/calls/{id}, with its JSON body (None: no body). The same rule: a new one needs an entry.
CALL_ROUTE_BODIES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("GET", "/api/calls/{id}"): None,
    ("GET", "/api/calls/{id}/notes"): None,
    ("PUT", "/api/calls/{id}/notes"): {"text": "overwritten by an outsider"},
    ("GET", "/api/calls/{id}/transcript"): None,
    ("GET", "/api/calls/{id}/recordings"): None,
    ("GET", "/api/calls/{id}/recordings/{recording_id}"): None,
}


async def test_no_call_event_or_route_lets_an_outsider_in(server: RunningServer, http: aiohttp.ClientSession, sockets) -> None:
    """A stranger, a therapist who is not in the call (the one who lost the race for the request) and both members of
    a different call get `forbidden` (403 over HTTP) from every call event and route, and nothing reaches the
    members."""
    from calls.membership import load_call
    from conftest import open_call

    call_events = {name for name in EVENTS.events if name.startswith("call.")}
    assert call_events == set(CALL_EVENT_PAYLOADS), "every call event needs an outsider payload here"
    call_routes = {key for key in registered_routes(server) if key[1].startswith("/api/calls/{id}")}
    assert call_routes == set(CALL_ROUTE_BODIES), "every call route needs an outsider entry here"

    users = Users(server, http)
    t_user, c_user = await users.therapist(), await users.client()
    call_id = await open_call(server, t_user, c_user, recording_consent=True)
    other_t, other_c = await users.therapist(), await users.client()
    other_call = await open_call(server, other_t, other_c)
    outsiders = {"stranger": await users.client(), "therapist_who_lost_the_race": await users.therapist(),
                 "therapist_of_another_call": other_t, "client_of_another_call": other_c}
    therapist, client = await sockets(server, t_user, "therapist"), await sockets(server, c_user, "client")
    for sock in (therapist, client):
        assert (await sock.call("call.join", {"call_id": call_id}))["ok"]
    assert (await therapist.call("call.notes.save", {"call_id": call_id, "text": "the therapist's own"}))["ok"]
    await therapist.next("pool.snapshot")  # the dashboard state every therapist connection gets shortly after connecting
    seen = (len(therapist.events), len(client.events))

    for party, user in outsiders.items():
        sock = await sockets(server, user, party)
        if user in (other_t, other_c):
            assert (await sock.call("call.join", {"call_id": other_call}))["ok"]
        for name, payload in CALL_EVENT_PAYLOADS.items():
            ack = await sock.call(name, {**payload, "call_id": call_id})
            assert not ack["ok"] and ack["error"]["code"] == "forbidden", f"{name} as {party}: {ack}"
            assert set(ack) == {"ok", "error"}, f"{name} as {party} leaked {ack}"
        for (method, path), body in CALL_ROUTE_BODIES.items():
            url = server.url + path.replace("{id}", str(call_id)).replace("{recording_id}", "1")
            async with http.request(method, url, headers=user.headers, json=body) as resp:
                answer = await resp.json()
            assert resp.status == 403 and answer["error"]["code"] == "forbidden", f"{method} {path} as {party}: {answer}"
        async with http.get(f"{server.url}/api/calls", headers=user.headers) as resp:
            assert call_id not in [c["id"] for c in (await resp.json())["calls"]]

    assert (len(therapist.events), len(client.events)) == seen, \
        f"relayed to the members: {therapist.events[seen[0]:]} {client.events[seen[1]:]}"
    call = await load_call(server.services.calls, call_id)
    assert call is not None and call.status.value == "open" and call.recording_consent
    assert all(m.sid is not None and m.joins == 1 for m in call.members), "the members keep their places"
    assert server.services.media.consumers(call_id) == {}
    assert (await therapist.call("call.notes.get", {"call_id": call_id}))["text"] == "the therapist's own"


async def test_clients_and_pending_therapists_never_see_the_pool(server: RunningServer, users: Users, sockets) -> None:
    onlooker = await sockets(server, await users.client(), "onlooker client")
    pending_user = await users.therapist(approved=False)
    pending = await sockets(server, pending_user, "pending therapist")
    assert (await pending.call("pool.set_availability", {"available": True}))["error"]["code"] == "not_approved"
    therapist = await sockets(server, await users.therapist(), "therapist")
    await therapist.next("pool.snapshot")  # pushed after connecting: the earlier connections' pushes are out too
    assert (await therapist.call("pool.set_availability", {"available": True}))["ok"]
    client = await sockets(server, await users.client(), "client")
    request_id = (await client.call("pool.request", {"reason": "private"}))["request"]["id"]
    await therapist.next("pool.request_added", lambda d: d["request"]["id"] == request_id)
    assert (await therapist.call("pool.accept", {"request_id": request_id}))["ok"]
    assert (await client.call("pool.respond", {"request_id": request_id, "accept": False}))["ok"]
    for sock in (onlooker, pending, client):
        assert (await sock.call("session.ping"))["ok"]  # a round trip: anything sent before it has arrived
        seen = {name for name, _ in sock.events}
        assert not seen & {"pool.request_added", "pool.request_removed", "pool.snapshot", "pool.offer_updated"}, \
            f"{sock.name} received {sorted(seen)}"
