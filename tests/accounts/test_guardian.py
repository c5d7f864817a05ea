"""Guardian consent for clients under 18: the e-mailed link, its one-time token, and consent recorded by an admin."""

from __future__ import annotations

import re
from typing import Callable

import aiohttp
import pytest
from sqlalchemy import select

from accounts.models import ClientProfile
from accounts.policy import require_can_start_session
from accounts_api import Api, api, audit_events, expect, minor, outbox  # noqa: F401 - `api` is a fixture
from conftest import Canary, RunningServer, User, Users, start_server, wait_for
from core.clock import FrozenClock
from core.errors import Forbidden
from core.settings import Settings
from messaging.outbox import OutboxMessage, OutboxStatus

GUARDIAN_EMAIL = "parent@example.org"


def guardian_request(name: str = "Pat Jones", email: str = GUARDIAN_EMAIL, relationship: str = "mother") -> dict[str, str]:
    return {"guardian_name": name, "guardian_email": email, "guardian_relationship": relationship}


async def consent_token(server: RunningServer, email: str = GUARDIAN_EMAIL) -> str:
    """The token in the newest consent e-mail, checking the link keeps it in the URL fragment."""
    messages = await outbox(server, email, "guardian_consent")
    assert messages, "a consent e-mail was queued"
    body = messages[-1].body
    public_url = server.services.settings.effective_public_url
    match = re.search(re.escape(public_url) + r"/guardian-consent#token=([A-Za-z0-9_-]+)", body)
    assert match, "the link carries the token in the fragment"
    assert "?token" not in body and "&token" not in body
    return match.group(1)


def confirmation(token: str, name: str = "Pat Jones", **extra: object) -> dict[str, object]:
    return {"token": token, "guardian_name": name, "relationship": "mother", "consent": True, **extra}


async def client_profile(server: RunningServer, user_id: int) -> ClientProfile:
    async with server.services.db.session() as session:
        profile = await session.scalar(select(ClientProfile).where(ClientProfile.user_id == user_id))
        assert profile is not None
        return profile


async def test_guardian_consents_through_the_emailed_link(server: RunningServer, users: Users, api: Api, canary: Canary) -> None:
    teen = await minor(users, server, display_name="Sam")
    me = await api.me(teen)
    assert (me["client"]["minor"], me["client"]["guardian_consent"], me["client"]["guardian_consent_requested"]) == (True, None, False)

    guardian_name = canary.text("Pat ")
    reply = expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request(guardian_name)), 202)
    assert reply.body["client"]["guardian_consent_requested"] is True
    assert reply.body["client"]["guardian_consent"] is None
    [message] = await outbox(server, GUARDIAN_EMAIL, "guardian_consent")
    assert "Sam" in message.body and guardian_name in message.body
    token = await consent_token(server)

    details = expect(await api("POST", "/api/guardian-consent/details", json={"token": token}), 200).body
    assert details == {"child_display_name": "Sam", "guardian_name": guardian_name, "guardian_relationship": "mother"}
    expect(await api("POST", "/api/guardian-consent/details", json={"token": token}), 200)  # reading does not use it up

    signed = canary.text("Patricia Jones ")
    assert expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(token, signed)), 200).body == {"consented": True}
    consent = (await api.me(teen))["client"]["guardian_consent"]
    assert consent["method"] == "email_form" and consent["name"] == signed
    assert consent["at"] == server.services.clock.now().isoformat()

    expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(token)), 400, "bad_token")
    expect(await api("POST", "/api/guardian-consent/details", json={"token": token}), 400, "bad_token")
    assert (await api.me(teen))["client"]["guardian_consent"]["name"] == signed

    [event] = await audit_events(server, "guardian_consent.recorded", teen.id)
    assert event.actor_id is None and "guardian_name" in event.fields
    assert canary.marker not in repr(event.fields)
    assert await audit_events(server, "guardian_consent.requested", teen.id)

    async def delivered() -> bool:  # the sender runs too, and must not log the message either
        async with server.services.db.session() as session:
            rows = (await session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == GUARDIAN_EMAIL))).all()
            return bool(rows) and all(row.status is OutboxStatus.sent for row in rows)

    await wait_for(delivered)


async def test_expired_link_is_a_bad_token(server: RunningServer, users: Users, api: Api, clock: FrozenClock) -> None:
    teen = await minor(users, server)
    expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request()), 202)
    token = await consent_token(server)
    clock.advance(server.services.settings.email_token_ttl_s + 1)
    expect(await api("POST", "/api/guardian-consent/details", json={"token": token}), 400, "bad_token")
    expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(token)), 400, "bad_token")
    assert (await api.me(teen))["client"]["guardian_consent"] is None


async def test_a_new_request_replaces_the_earlier_link(server: RunningServer, users: Users, api: Api) -> None:
    teen = await minor(users, server)
    expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request()), 202)
    first = await consent_token(server)
    expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request(email="dad@example.org",
                                                                                          relationship="father")), 202)
    second = await consent_token(server, "dad@example.org")
    expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(first)), 400, "bad_token")
    assert (await api("POST", "/api/guardian-consent/details", json={"token": second})).body["guardian_relationship"] == "father"
    expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(second)), 200)
    expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request()), 409, "already_consented")


async def test_bad_confirmations_change_nothing_and_keep_the_link_usable(server: RunningServer, users: Users, api: Api) -> None:
    teen = await minor(users, server)
    expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request()), 202)
    token = await consent_token(server)
    cases = [
        (confirmation(token, consent=False), "consent_required"),
        (confirmation(token, consent="true"), "consent_required"),
        (confirmation(token, consent=1), "consent_required"),
        ({k: v for k, v in confirmation(token).items() if k != "consent"}, "consent_required"),
        (confirmation(token, name=""), "missing_field"),
        (confirmation(token, name="x" * 121), "too_long"),
        ({**confirmation(token), "relationship": None}, "missing_field"),
        (confirmation(token, guardian_email="other@example.org"), "unknown_field"),
        (confirmation("not-a-real-token"), "bad_token"),
        (confirmation("x" * 500), "too_long"),
        (confirmation(""), "missing_field"),
    ]
    for body, code in cases:
        expect(await api("POST", "/api/guardian-consent/confirm", json=body), 400, code)
    for body, code in (({"token": "nope"}, "bad_token"), ({}, "missing_field"), ({"token": token, "x": 1}, "unknown_field")):
        expect(await api("POST", "/api/guardian-consent/details", json=body), 400, code)
    assert (await api.me(teen))["client"]["guardian_consent"] is None
    expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(token)), 200)


async def test_bad_requests_store_nothing_and_send_nothing(server: RunningServer, users: Users, api: Api) -> None:
    teen = await minor(users, server)
    adult, therapist = await users.client(), await users.therapist()
    expect(await api("POST", "/api/me/guardian-consent-request", adult, json=guardian_request()), 409, "not_a_minor")
    expect(await api("POST", "/api/me/guardian-consent-request", therapist, json=guardian_request()), 403, "forbidden")
    expect(await api("POST", "/api/me/guardian-consent-request", json=guardian_request()), 401, "invalid_token")
    cases = [
        ({k: v for k, v in guardian_request().items() if k != "guardian_email"}, "missing_field"),
        (guardian_request(email="not-an-address"), "invalid"),
        (guardian_request(name=""), "missing_field"),
        (guardian_request(relationship="r" * 61), "too_long"),
        ({**guardian_request(), "guardian_consent_at": "2020-01-01"}, "unknown_field"),
        (guardian_request(email=teen.email), "same_email"),
    ]
    for body, code in cases:
        expect(await api("POST", "/api/me/guardian-consent-request", teen, json=body), 400, code)
    assert (await api.me(teen))["client"]["guardian_consent_requested"] is False
    assert (await api.me(adult))["client"]["guardian_consent_requested"] is False
    assert await outbox(server, GUARDIAN_EMAIL) == []
    assert await outbox(server, "not-an-address") == []


async def test_consent_requests_are_rate_limited_per_client(server: RunningServer, users: Users, api: Api, clock: FrozenClock) -> None:
    teen, other = await minor(users, server), await minor(users, server)
    for n in range(5):
        expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request(email=f"g{n}@example.org")), 202)
    reply = expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request(email="g5@example.org")),
                   429, "rate_limited")
    assert int(reply.headers["Retry-After"]) > 0
    assert await outbox(server, "g5@example.org") == []
    expect(await api("POST", "/api/me/guardian-consent-request", other, json=guardian_request()), 202)
    clock.advance(24 * 3600 + 1)
    expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request(email="g5@example.org")), 202)


async def test_admin_records_consent(server: RunningServer, users: Users, api: Api, canary: Canary) -> None:
    teen, adult, therapist = await minor(users, server), await users.client(), await users.therapist()
    admin = await users.admin()
    body = {"guardian_name": canary.text("Gran "), "guardian_relationship": "grandmother"}
    reply = expect(await api("POST", f"/api/admin/clients/{teen.id}/guardian-consent", admin, json=body), 200)
    assert reply.body["id"] == teen.id and reply.body["guardian_consent"]["method"] == "admin"
    consent = (await api.me(teen))["client"]["guardian_consent"]
    assert (consent["method"], consent["name"]) == ("admin", body["guardian_name"])
    assert (await client_profile(server, teen.id)).guardian_consent_by == admin.id
    [event] = await audit_events(server, "guardian_consent.recorded", teen.id)
    assert event.actor_id == admin.id

    expect(await api("POST", f"/api/admin/clients/{adult.id}/guardian-consent", admin, json=body), 409, "not_a_minor")
    for missing in (therapist.id, 999_999):
        expect(await api("POST", f"/api/admin/clients/{missing}/guardian-consent", admin, json=body), 404, "not_found")
    expect(await api("POST", f"/api/admin/clients/{teen.id}/guardian-consent", admin, json={**body, "method": "x"}),
           400, "unknown_field")
    expect(await api("POST", f"/api/admin/clients/{teen.id}/guardian-consent", admin, json={"guardian_name": "X"}),
           400, "missing_field")
    for user, status, code in ((teen, 403, "forbidden"), (therapist, 403, "forbidden"), (None, 401, "invalid_token")):
        expect(await api("POST", f"/api/admin/clients/{adult.id}/guardian-consent", user, json=body), status, code)
    assert (await api.me(adult))["client"]["guardian_consent"] is None
    assert len(await audit_events(server, "guardian_consent.recorded")) == 1


async def test_minor_cannot_start_a_session_until_a_guardian_consents(server: RunningServer, users: Users, api: Api) -> None:
    teen, adult, admin = await minor(users, server), await users.client(), await users.admin()
    now = server.services.clock.now()
    with pytest.raises(Forbidden) as refused:
        require_can_start_session(await client_profile(server, teen.id), now)
    assert refused.value.code == "guardian_consent_required"
    require_can_start_session(await client_profile(server, adult.id), now)
    body = {"guardian_name": "Pat Jones", "guardian_relationship": "mother"}
    expect(await api("POST", f"/api/admin/clients/{teen.id}/guardian-consent", admin, json=body), 200)
    require_can_start_session(await client_profile(server, teen.id), now)


async def test_consent_flow_on_both_databases(
    database_url: str, make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    running = await start_server(make_settings(database_url=database_url), clock=clock)
    try:
        api, users = Api(running, http), Users(running, http)
        teen: User = await minor(users, running)
        expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request()), 202)
        expect(await api("POST", "/api/me/guardian-consent-request", teen, json=guardian_request()), 202)
        token = await consent_token(running)
        expect(await api("POST", "/api/guardian-consent/details", json={"token": token}), 200)
        expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(token)), 200)
        expect(await api("POST", "/api/guardian-consent/confirm", json=confirmation(token)), 400, "bad_token")
        assert (await api.me(teen))["client"]["guardian_consent"]["method"] == "email_form"
    finally:
        await running.runner.cleanup()
