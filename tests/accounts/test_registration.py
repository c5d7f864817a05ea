"""Registration and therapist applications over REST: round trips, bad input, roles never from the request."""

from __future__ import annotations

import aiohttp
from sqlalchemy import func, select

from accounts.models import User
from conftest import PASSWORD, RunningServer, Users


async def count_users(server: RunningServer) -> int:
    async with server.services.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_client_registers_then_signs_in_and_reads_own_account(server: RunningServer, http: aiohttp.ClientSession) -> None:
    body = {"email": "Ann@Example.org", "password": PASSWORD, "display_name": "Ann", "date_of_birth": "1990-01-02"}
    async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
        assert resp.status == 201
        registered = await resp.json()
    assert registered["user"]["role"] == "client"
    assert registered["user"]["email"] == "ann@example.org"
    assert registered["user"]["email_verified"] is False
    assert "password" not in str(registered["user"]).lower()

    async with http.post(f"{server.url}/api/auth/signin", json={"email": "ann@example.org", "password": PASSWORD}) as resp:
        assert resp.status == 200
        signed_in = await resp.json()
    assert signed_in["token"] != registered["token"]
    async with http.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {signed_in['token']}"}) as resp:
        me = await resp.json()
    assert me["id"] == registered["user"]["id"]
    assert me["client"]["minor"] is False


async def test_therapist_application_is_pending_and_cannot_claim_a_role(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    therapist = await users.therapist(approved=False)
    async with http.get(f"{server.url}/api/me", headers=therapist.headers) as resp:
        me = await resp.json()
    assert me["role"] == "therapist"
    assert me["therapist"]["status"] == "pending"
    assert me["therapist"]["available"] is False

    sneaky = {"email": "x@example.org", "password": PASSWORD, "display_name": "X", "date_of_birth": "1990-01-02",
              "role": "admin"}
    async with http.post(f"{server.url}/api/auth/register", json=sneaky) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "unknown_field"


async def test_taken_email_is_a_conflict_and_creates_nothing(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    before = await count_users(server)
    body = {"email": client.email.upper(), "password": PASSWORD, "display_name": "Again", "date_of_birth": "1990-01-02"}
    async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "email_taken"
    assert await count_users(server) == before


BAD_REGISTRATIONS = [
    ({"password": PASSWORD, "display_name": "A", "date_of_birth": "1990-01-02"}, 400, "missing_field"),
    ({"email": "not-an-email", "password": PASSWORD, "display_name": "A", "date_of_birth": "1990-01-02"}, 400, "invalid"),
    ({"email": "a@example.org", "password": "short", "display_name": "A", "date_of_birth": "1990-01-02"}, 400, "weak_password"),
    ({"email": "a@example.org", "password": PASSWORD, "display_name": 7, "date_of_birth": "1990-01-02"}, 400, "invalid"),
    ({"email": "a@example.org", "password": PASSWORD, "display_name": "A", "date_of_birth": "02/01/1990"}, 400, "invalid"),
    ({"email": "a@example.org", "password": PASSWORD, "display_name": "A", "date_of_birth": "2099-01-01"}, 400, "invalid"),
    ({"email": "a@example.org", "password": PASSWORD, "display_name": "A", "date_of_birth": "2020-01-01"}, 400, "too_young"),
    ({"email": "a@example.org", "password": PASSWORD, "display_name": "A" * 81, "date_of_birth": "1990-01-02"}, 400, "too_long"),
    ({"email": "a@example.org", "password": PASSWORD, "display_name": "A\x00", "date_of_birth": "1990-01-02"}, 400, "invalid"),
]


async def test_bad_registrations_get_a_code_and_change_nothing(server: RunningServer, http: aiohttp.ClientSession) -> None:
    for body, status, code in BAD_REGISTRATIONS:
        async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
            data = await resp.json()
            assert (resp.status, data["error"]["code"]) == (status, code), body
            assert data["error"]["message"]
    assert await count_users(server) == 0


async def test_malformed_bodies_are_refused(server: RunningServer, http: aiohttp.ClientSession) -> None:
    url = f"{server.url}/api/auth/register"
    cases = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"data": b"[1,2]", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"data": b"email=a", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media"),
        ({"data": b"{" + b" " * 70_000 + b"}", "headers": {"Content-Type": "application/json"}}, 413, "too_large"),
    ]
    for kwargs, status, code in cases:
        async with http.post(url, **kwargs) as resp:
            assert resp.status == status
            assert (await resp.json())["error"]["code"] == code
    assert await count_users(server) == 0


async def test_therapist_application_needs_current_insurance(server: RunningServer, http: aiohttp.ClientSession) -> None:
    body = {
        "email": "t@example.org", "password": PASSWORD, "display_name": "T", "qualifications": "MSc",
        "registration_body": "BACP", "registration_number": "1", "insurance_provider": "X", "insurance_expiry": "2020-01-01",
    }
    async with http.post(f"{server.url}/api/auth/apply", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "insurance_expired"
    assert await count_users(server) == 0


async def test_minor_is_marked_as_such(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    today = server.services.clock.now().date()
    teen = await users.client(date_of_birth=today.replace(year=today.year - 15).isoformat())
    async with http.get(f"{server.url}/api/me", headers=teen.headers) as resp:
        me = await resp.json()
    assert me["client"]["minor"] is True
    assert me["client"]["guardian_consent"] is None
