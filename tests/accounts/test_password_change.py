"""Changing the password while signed in: the current one is checked, the other sessions end, this one goes on."""

from __future__ import annotations

from typing import Callable

import aiohttp

from accounts_api import Api, api, audit_events, expect  # noqa: F401 - `api` is a fixture
from conftest import PASSWORD, RunningServer, User, Users, start_server, wait_for
from core.clock import FrozenClock
from core.settings import Settings

NEW_PASSWORD = "a fresh passphrase 42"


async def signin(api: Api, email: str, password: str) -> User | None:
    reply = await api("POST", "/api/auth/signin", json={"email": email, "password": password})
    return User(reply.body["user"]["id"], email, reply.body["token"], reply.body["user"]["role"]) if reply.status == 200 else None


async def test_changing_the_password_ends_the_other_sessions_only(server: RunningServer, users: Users, api: Api, sockets) -> None:
    therapist = await users.therapist()
    phone = await signin(api, therapist.email, PASSWORD)
    assert phone is not None
    here, there = await sockets(server, therapist, "here"), await sockets(server, phone, "phone")

    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    expect(await api("POST", "/api/me/password", therapist, json=body), 204)

    expect(await api("GET", "/api/me", therapist), 200)
    expect(await api("GET", "/api/me", phone), 401, "invalid_token")
    await wait_for(lambda: not there.sio.connected)
    assert here.sio.connected and (await here.call("session.ping"))["ok"] is True
    assert await signin(api, therapist.email, PASSWORD) is None
    assert await signin(api, therapist.email, NEW_PASSWORD) is not None
    [event] = await audit_events(server, "password.changed", therapist.id)
    assert (event.actor_id, event.fields) == (therapist.id, ["password"])


async def test_a_wrong_current_or_weak_new_password_changes_nothing(server: RunningServer, users: Users, api: Api) -> None:
    client = await users.client()
    other = await signin(api, client.email, PASSWORD)
    cases = [
        ({"current_password": "not my password", "new_password": NEW_PASSWORD}, "wrong_password", "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, "weak_password", "new_password"),
        ({"current_password": PASSWORD}, "missing_field", "new_password"),
        ({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "role": "admin"}, "unknown_field", None),
    ]
    for body, code, field in cases:
        reply = expect(await api("POST", "/api/me/password", client, json=body), 400, code)
        assert reply.body["error"].get("details", {}).get("field") == field
    expect(await api("POST", "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
           401, "invalid_token")
    assert other is not None
    expect(await api("GET", "/api/me", other), 200)
    assert await signin(api, client.email, PASSWORD) is not None
    assert await audit_events(server, "password.changed") == []


async def test_guessing_the_current_password_is_rate_limited(server: RunningServer, users: Users, api: Api) -> None:
    """A stolen token cannot be used to try passwords: wrong ones count as failed sign-ins of the account."""
    client = await users.client()
    for _ in range(server.services.settings.signin_attempts_per_account):
        expect(await api("POST", "/api/me/password", client, json={"current_password": "guess guess", "new_password": NEW_PASSWORD}),
               400, "wrong_password")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    expect(await api("POST", "/api/me/password", client, json=body), 429, "rate_limited")
    assert await signin(api, client.email, PASSWORD) is None, "sign-in is limited as well"


async def test_passwords_never_reach_the_logs(server: RunningServer, users: Users, api: Api, canary) -> None:
    client = await users.client()
    secret = canary.text("new-password-")
    expect(await api("POST", "/api/me/password", client, json={"current_password": canary.text("x"), "new_password": secret}),
           400, "wrong_password")
    expect(await api("POST", "/api/me/password", client, json={"current_password": PASSWORD, "new_password": secret}), 204)


async def test_password_change_and_sliding_tokens_on_both_databases(
    database_url: str, make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    running = await start_server(make_settings(database_url=database_url), clock=clock)
    try:
        api, users = Api(running, http), Users(running, http)
        client = await users.client()
        other = await signin(api, client.email, PASSWORD)
        assert other is not None
        clock.advance(running.services.settings.token_ttl_s * 0.6)
        expect(await api("POST", "/api/me/password", client, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}), 204)
        expect(await api("GET", "/api/me", other), 401, "invalid_token")
        clock.advance(running.services.settings.token_ttl_s * 0.6)  # past the first expiry: the change slid it
        expect(await api("GET", "/api/me", client), 200)
    finally:
        await running.runner.cleanup()
