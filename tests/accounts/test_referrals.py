"""Referral codes: a therapist's own code allocates the clients who register with it; a revoked one stops working."""

from __future__ import annotations

import itertools
from typing import Callable

import aiohttp
import pytest
from sqlalchemy import func, select

from accounts import referrals
from accounts.models import Role, User as UserRow
from accounts.principal import Principal
from accounts_api import Api, api, audit_events, expect  # noqa: F401 - `api` is a fixture
from conftest import PASSWORD, Canary, RunningServer, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings

CODES = "/api/therapist/referral-codes"


async def count_users(server: RunningServer) -> int:
    async with server.services.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(UserRow)) or 0)


async def register(api: Api, code: str, email: str = "referred@example.org"):  # type: ignore[no-untyped-def]
    body = {"email": email, "password": PASSWORD, "display_name": "Robin", "date_of_birth": "1992-03-04", "referral_code": code}
    return await api("POST", "/api/auth/register", json=body)


async def test_client_registered_with_a_code_is_allocated_to_its_therapist(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist()
    created = expect(await api("POST", CODES, therapist), 201).body
    code = created["code"]
    assert len(code) == 8 and set(code) <= set(referrals.ALPHABET)
    assert not set(code) & set("0O1I") and code == code.upper()
    assert (created["uses"], created["active"], created["revoked_at"]) == (0, True, None)

    reply = expect(await register(api, code.lower()), 201)
    assert reply.body["user"]["client"]["allocated_therapist_id"] == therapist.id
    listed = expect(await api("GET", CODES, therapist), 200).body["codes"]
    assert [(c["code"], c["uses"]) for c in listed] == [(code, 1)]
    [event] = await audit_events(server, "referral_code.created")
    assert event.actor_id == therapist.id


async def test_revoked_or_unknown_code_creates_no_account(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist()
    code = expect(await api("POST", CODES, therapist), 201).body["code"]
    revoked = expect(await api("DELETE", f"{CODES}/{code}", therapist), 200).body
    assert revoked["active"] is False and revoked["revoked_at"] == server.services.clock.now().isoformat()
    expect(await api("DELETE", f"{CODES}/{code}", therapist), 200)  # revoking again changes nothing
    assert len(await audit_events(server, "referral_code.revoked")) == 1

    before = await count_users(server)
    for bad in (code, "ZZZZZZZZ"):
        reply = expect(await register(api, bad), 400, "bad_referral_code")
        assert reply.body["error"]["details"]["field"] == "referral_code"
    assert await count_users(server) == before
    expect(await api("POST", "/api/auth/signin", json={"email": "referred@example.org", "password": PASSWORD}),
           401, "bad_credentials")
    assert [c["uses"] for c in expect(await api("GET", CODES, therapist), 200).body["codes"]] == [0]


async def test_one_therapist_cannot_revoke_or_see_anothers_codes(users: Users, api: Api) -> None:
    owner, other = await users.therapist(), await users.therapist()
    code = expect(await api("POST", CODES, owner), 201).body["code"]
    expect(await api("DELETE", f"{CODES}/{code}", other), 404, "not_found")
    assert expect(await api("GET", CODES, other), 200).body == {"codes": []}
    [listed] = expect(await api("GET", CODES, owner), 200).body["codes"]
    assert listed["active"] is True
    expect(await register(api, code), 201)


async def test_codes_need_an_approved_therapist(users: Users, api: Api) -> None:
    pending, client, admin = await users.therapist(approved=False), await users.client(), await users.admin()
    expect(await api("POST", CODES, pending), 403, "not_approved")
    for user in (client, admin):
        expect(await api("POST", CODES, user), 403, "forbidden")
        expect(await api("GET", CODES, user), 403, "forbidden")
        expect(await api("DELETE", f"{CODES}/ABCDEFGH", user), 403, "forbidden")
    expect(await api("POST", CODES), 401, "invalid_token")
    expect(await api("GET", CODES), 401, "invalid_token")
    assert expect(await api("GET", CODES, pending), 200).body == {"codes": []}


async def test_codes_are_listed_newest_first(users: Users, api: Api, clock: FrozenClock) -> None:
    therapist = await users.therapist()
    made = []
    for _ in range(3):
        made.append(expect(await api("POST", CODES, therapist), 201).body["code"])
        clock.advance(60)
    assert [c["code"] for c in expect(await api("GET", CODES, therapist), 200).body["codes"]] == made[::-1]


async def test_a_colliding_code_is_retried(server: RunningServer, users: Users, monkeypatch: pytest.MonkeyPatch) -> None:
    therapist = await users.therapist()
    principal = Principal(user_id=therapist.id, role=Role.therapist)
    ctx = server.services.accounts
    first = await referrals.create_code(ctx, principal)
    candidates = itertools.chain([first.code, first.code], iter(lambda: "QQQQ2222", None))
    monkeypatch.setattr(referrals, "new_code", lambda: next(candidates))
    second = await referrals.create_code(ctx, principal)
    assert second.code == "QQQQ2222"
    assert {row.code for row in await referrals.list_codes(ctx, principal)} == {first.code, "QQQQ2222"}


async def test_referral_text_never_reaches_the_logs(server: RunningServer, users: Users, api: Api, canary: Canary) -> None:
    therapist = await users.therapist()
    expect(await register(api, canary.text()), 400, "too_long")
    expect(await register(api, canary.text()[:16]), 400, "bad_referral_code")
    expect(await api("DELETE", f"{CODES}/{canary.text()}", therapist), 404, "not_found")
    expect(await api("DELETE", f"{CODES}/{canary.text()[:10]}", therapist), 404, "not_found")


async def test_referral_codes_on_both_databases(
    database_url: str, make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    running = await start_server(make_settings(database_url=database_url), clock=clock)
    try:
        api, users = Api(running, http), Users(running, http)
        therapist = await users.therapist()
        code = expect(await api("POST", CODES, therapist), 201).body["code"]
        reply = expect(await register(api, code), 201)
        assert reply.body["user"]["client"]["allocated_therapist_id"] == therapist.id
        expect(await api("DELETE", f"{CODES}/{code}", therapist), 200)
        expect(await register(api, code, "second@example.org"), 400, "bad_referral_code")
        assert [c["uses"] for c in expect(await api("GET", CODES, therapist), 200).body["codes"]] == [1]
    finally:
        await running.runner.cleanup()
