"""E-mail verification and password reset through the outbox; links carry the token in the fragment only."""

from __future__ import annotations

import re
from typing import Callable

import aiohttp

from conftest import PASSWORD, RunningServer, Users, start_server, wait_for
from core.clock import FrozenClock
from core.settings import Settings
from messaging.outbox import OutboxMessage, OutboxStatus, messages_for


async def outbox(server: RunningServer, email: str, kind: str) -> list:
    async with server.services.db.session() as session:
        return await messages_for(session, server.services.keyring, email, kind)


def token_from(body: str, path: str) -> str:
    match = re.search(rf"/{path}#token=([A-Za-z0-9_-]+)", body)
    assert match, "the link carries the token in the URL fragment"
    return match.group(1)


async def test_registration_sends_a_verification_link_that_works_once(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    [mail] = await outbox(server, client.email, "verify_email")
    token = token_from(mail.body, "verify-email")
    assert "?" not in mail.body.split("verify-email")[1].split()[0], "no query string for a server log to keep"

    async with http.post(f"{server.url}/api/auth/verify-email", json={"token": token}) as resp:
        assert resp.status == 200
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert (await resp.json())["email_verified"] is True
    async with http.post(f"{server.url}/api/auth/verify-email", json={"token": token}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_token"


async def test_outbox_bodies_are_encrypted_and_delivered(server: RunningServer, users: Users) -> None:
    client = await users.client()

    async def delivered() -> bool:
        async with server.services.db.session() as session:
            rows = (await session.execute(OutboxMessage.__table__.select())).all()
        return bool(rows) and all(r.status == OutboxStatus.sent for r in rows)

    await wait_for(delivered)
    async with server.services.db.session() as session:
        raw = (await session.execute(OutboxMessage.__table__.select())).first()
    assert raw is not None and "verify-email" not in raw.body_enc and raw.body_enc.startswith("v1.")
    assert client.email == raw.recipient


async def test_password_reset_sets_a_new_password_and_signs_out_everywhere(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": client.email}) as resp:
        assert resp.status == 202
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": "nobody@example.org"}) as resp:
        assert resp.status == 202, "same answer for unknown addresses"
    [mail] = await outbox(server, client.email, "reset_password")
    token = token_from(mail.body, "reset-password")

    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json={"token": token, "password": "short"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "weak_password"
    new_password = "a brand new passphrase"
    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json={"token": token, "password": new_password}) as resp:
        assert resp.status == 204
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 401, "old sessions end"
    async with http.post(f"{server.url}/api/auth/signin", json={"email": client.email, "password": PASSWORD}) as resp:
        assert resp.status == 401
    async with http.post(f"{server.url}/api/auth/signin", json={"email": client.email, "password": new_password}) as resp:
        assert resp.status == 200
    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json={"token": token, "password": "yet another one!"}) as resp:
        assert resp.status == 400, "a reset link works once"


async def test_reset_link_expires(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": client.email}) as resp:
        assert resp.status == 202
    [mail] = await outbox(server, client.email, "reset_password")
    clock.advance(3601)
    body = {"token": token_from(mail.body, "reset-password"), "password": "a brand new passphrase"}
    async with http.post(f"{server.url}/api/auth/password-reset/confirm", json=body) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_token"


async def delivered(server: RunningServer, email: str) -> list[str]:
    """The kinds of the messages to `email` that have been delivered (to the log, in the embedded mode)."""
    async with server.services.db.session() as session:
        rows = (await session.execute(OutboxMessage.__table__.select().where(OutboxMessage.recipient == email))).all()
    return sorted(r.kind for r in rows if r.status == OutboxStatus.sent)


async def test_secret_links_never_reach_the_logs(server: RunningServer, users: Users, http: aiohttp.ClientSession, captured_logs) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/password-reset", json={"email": client.email}) as resp:
        assert resp.status == 202
    async def both_delivered() -> bool:
        return await delivered(server, client.email) == ["reset_password", "verify_email"]

    await wait_for(both_delivered)
    assert captured_logs.getvalue().count("message.delivered_to_log") == 2
    for kind, path in (("verify_email", "verify-email"), ("reset_password", "reset-password")):
        [mail] = await outbox(server, client.email, kind)
        assert token_from(mail.body, path) not in captured_logs.getvalue()


async def post(http: aiohttp.ClientSession, url: str, body: dict | None = None, **kw: object) -> tuple[int, dict, str | None]:
    async with http.post(url, json=body if body is not None else {}, **kw) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_reset_requests_are_limited_per_email_the_same_whether_the_account_exists(
    server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock
) -> None:
    client = await users.client()
    limit = server.services.settings.email_requests_per_account
    url = f"{server.url}/api/auth/password-reset"
    known = [await post(http, url, {"email": client.email}) for _ in range(limit + 1)]
    unknown = [await post(http, url, {"email": "nobody@example.org"}) for _ in range(limit + 1)]
    assert known == unknown, "the answers do not tell whether there is an account"
    assert [status for status, _, _ in known] == [202] * limit + [429]
    _, body, retry_after = known[-1]
    assert body["error"]["code"] == "rate_limited" and retry_after is not None
    assert len(await outbox(server, client.email, "reset_password")) == limit, "no mail queued over the limit"

    clock.advance(server.services.settings.email_requests_window_s)
    assert (await post(http, url, {"email": client.email}))[0] == 202


async def test_resending_the_verification_link_is_limited(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    limit = server.services.settings.email_requests_per_account
    url = f"{server.url}/api/auth/resend-verification"
    statuses = [(await post(http, url, headers=client.headers))[0] for _ in range(limit + 1)]
    assert statuses == [202] * limit + [429]
    assert len(await outbox(server, client.email, "verify_email")) == 1 + limit


async def test_mail_sending_requests_are_limited_per_client_address(
    make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    running = await start_server(make_settings(trusted_proxies="127.0.0.1", email_requests_per_address=3), clock=clock)
    try:
        sender = {"X-Forwarded-For": "203.0.113.9"}

        def client_body(n: int) -> dict:
            return {"email": f"flood{n}@example.org", "password": PASSWORD, "display_name": "F", "date_of_birth": "1990-01-01"}

        for n in range(3):
            assert (await post(http, f"{running.url}/api/auth/register", client_body(n), headers=sender))[0] == 201
        status, body, _ = await post(http, f"{running.url}/api/auth/register", client_body(3), headers=sender)
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        status, _, _ = await post(http, f"{running.url}/api/auth/signin", {"email": "flood3@example.org", "password": PASSWORD})
        assert status == 401, "no account was made"
        assert await outbox(running, "flood3@example.org", "verify_email") == []
        status, _, _ = await post(http, f"{running.url}/api/auth/password-reset", {"email": "flood0@example.org"}, headers=sender)
        assert status == 429, "every kind of mail counts for the address"
        therapist_body = {**client_body(4), "qualifications": "MSc", "registration_body": "BACP", "registration_number": "1",
                          "insurance_provider": "X", "insurance_expiry": "2031-01-01"}
        del therapist_body["date_of_birth"]
        assert (await post(http, f"{running.url}/api/auth/apply", therapist_body, headers=sender))[0] == 429

        elsewhere = {"X-Forwarded-For": "198.51.100.7"}
        assert (await post(http, f"{running.url}/api/auth/register", client_body(3), headers=elsewhere))[0] == 201
    finally:
        await running.runner.cleanup()
