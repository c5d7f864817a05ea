"""Sign-in, tokens, sign-out and the rate limits on failed attempts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

import aiohttp

from conftest import PASSWORD, RunningServer, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings


async def signin(http: aiohttp.ClientSession, server: RunningServer, email: str, password: str, **kw: object) -> tuple[int, dict]:
    async with http.post(f"{server.url}/api/auth/signin", json={"email": email, "password": password}, **kw) as resp:
        return resp.status, await resp.json()


async def test_wrong_password_and_unknown_account_look_the_same(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    wrong = await signin(http, server, client.email, "not the password")
    unknown = await signin(http, server, "nobody@example.org", "not the password")
    assert wrong == unknown == (401, {"error": {"code": "bad_credentials", "message": "wrong e-mail address or password"}})


async def test_failed_signins_are_rate_limited_per_account(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    client = await users.client()
    limit = server.services.settings.signin_attempts_per_account
    for _ in range(limit):
        assert (await signin(http, server, client.email, "wrong password"))[0] == 401
    status, body = await signin(http, server, client.email, PASSWORD)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert body["error"]["details"]["retry_after"] > 0
    other = await users.client()
    assert (await signin(http, server, other.email, PASSWORD))[0] == 200, "another account is not affected"
    clock.advance(server.services.settings.signin_window_s + 1)
    assert (await signin(http, server, client.email, PASSWORD))[0] == 200


async def test_failed_signins_are_rate_limited_per_address_behind_a_trusted_proxy(
    make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    running = await start_server(
        make_settings(trusted_proxies="127.0.0.1", signin_attempts_per_address=3, signin_attempts_per_account=100),
        clock=clock,
    )
    try:
        users = Users(running, http)
        victim = await users.client()
        attacker = {"X-Forwarded-For": "203.0.113.9"}
        for _ in range(3):
            assert (await signin(http, running, f"x{_}@example.org", "nope", headers=attacker))[0] == 401
        assert (await signin(http, running, victim.email, PASSWORD, headers=attacker))[0] == 429
        elsewhere = {"X-Forwarded-For": "198.51.100.7"}
        assert (await signin(http, running, victim.email, PASSWORD, headers=elsewhere))[0] == 200
    finally:
        await running.runner.cleanup()


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    """Without a configured proxy, rotating X-Forwarded-For does not dodge the per-address limit."""
    limit = server.services.settings.signin_attempts_per_address
    for n in range(limit):
        status, _ = await signin(http, server, f"n{n}@example.org", "nope", headers={"X-Forwarded-For": f"10.0.0.{n}"})
        assert status == 401
    client = await users.client()
    assert (await signin(http, server, client.email, PASSWORD, headers={"X-Forwarded-For": "10.9.9.9"}))[0] == 429


async def test_signout_revokes_only_that_token(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    _, second = await signin(http, server, client.email, PASSWORD)
    async with http.post(f"{server.url}/api/auth/signout", headers=client.headers) as resp:
        assert resp.status == 204
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_token"
    async with http.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {second['token']}"}) as resp:
        assert resp.status == 200


async def test_signout_everywhere_and_refresh(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/refresh", headers=client.headers) as resp:
        fresh = (await resp.json())["token"]
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 401, "the refreshed token replaces the old one"
    headers = {"Authorization": f"Bearer {fresh}"}
    _, other = await signin(http, server, client.email, PASSWORD)
    async with http.post(f"{server.url}/api/auth/signout", headers=headers, json={"everywhere": True}) as resp:
        assert resp.status == 204
    async with http.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {other['token']}"}) as resp:
        assert resp.status == 401


async def test_expired_and_forged_tokens_are_refused(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    client = await users.client()
    for header in ({"Authorization": "Bearer forged-token"}, {"Authorization": "Basic abc"}, {}, {"Authorization": "Bearer " + "x" * 5000}):
        async with http.get(f"{server.url}/api/me", headers=header) as resp:
            assert resp.status == 401
    clock.advance(server.services.settings.token_ttl_s + 1)
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 401, "a token not used within its lifetime has expired"


async def test_state_changing_request_from_a_foreign_origin_is_refused(server: RunningServer, http: aiohttp.ClientSession) -> None:
    body = {"email": "o@example.org", "password": PASSWORD, "display_name": "O", "date_of_birth": "1990-01-02"}
    async with http.post(f"{server.url}/api/auth/register", json=body, headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "bad_origin"
    async with http.post(f"{server.url}/api/auth/register", json=body, headers={"Origin": "http://127.0.0.1:8080"}) as resp:
        assert resp.status == 201


async def test_passwords_and_tokens_never_reach_the_logs(server: RunningServer, http: aiohttp.ClientSession, canary) -> None:
    secret = canary.text("pw-")
    body = {"email": "c@example.org", "password": secret, "display_name": canary.text(), "date_of_birth": "1990-01-02"}
    async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
        token = (await resp.json())["token"]
    await signin(http, server, "c@example.org", secret)
    await signin(http, server, "c@example.org", secret + "wrong")
    assert token not in canary.logs.getvalue()


async def test_signin_and_refresh_say_when_the_token_expires(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    client = await users.client()
    ttl = timedelta(seconds=server.services.settings.token_ttl_s)
    _, body = await signin(http, server, client.email, PASSWORD)
    assert datetime.fromisoformat(body["expires_at"]) == clock.now() + ttl
    clock.advance(60)
    async with http.post(f"{server.url}/api/auth/refresh", headers={"Authorization": f"Bearer {body['token']}"}) as resp:
        fresh = await resp.json()
    assert set(fresh) == {"token", "expires_at"} and datetime.fromisoformat(fresh["expires_at"]) == clock.now() + ttl


async def test_a_token_in_use_slides_until_its_absolute_maximum(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    """Used when less than half of its lifetime is left, a token gets a full lifetime again, so it never runs out
    in the middle of a call; but never past `token_max_lifetime_s` from sign-in."""
    settings = server.services.settings
    client = await users.client()
    _, body = await signin(http, server, client.email, PASSWORD)
    headers = {"Authorization": f"Bearer {body['token']}"}
    signed_in_at, first_expiry = clock.now(), datetime.fromisoformat(body["expires_at"])
    step = settings.token_ttl_s * 0.6  # each use comes with 40 % of the lifetime left: it slides every time
    while clock.now() + timedelta(seconds=step) < signed_in_at + timedelta(seconds=settings.token_max_lifetime_s):
        clock.advance(step)
        async with http.get(f"{server.url}/api/me", headers=headers) as resp:
            assert resp.status == 200, f"refused {clock.now() - signed_in_at} after sign-in"
    assert clock.now() > first_expiry, "the token outlived its first expiry"
    clock.set(signed_in_at + timedelta(seconds=settings.token_max_lifetime_s))
    async with http.get(f"{server.url}/api/me", headers=headers) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_token"


async def test_a_token_not_used_in_time_still_expires(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    client = await users.client()
    clock.advance(server.services.settings.token_ttl_s * 0.4)
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 200, "more than half its lifetime left: nothing to slide"
    clock.advance(server.services.settings.token_ttl_s * 0.6 + 1)
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 401
