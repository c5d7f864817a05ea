"""Admins review therapist applications: list by status, approve, refuse; the therapist hears by e-mail."""

from __future__ import annotations

from typing import Callable

import aiohttp
import socketio

from accounts_api import Api, api, audit_events, expect, outbox  # noqa: F401 - `api` is a fixture
from conftest import RunningServer, Users, start_server, wait_for
from core.clock import FrozenClock
from core.settings import Settings

APPS = "/api/admin/applications"


async def test_admin_lists_applications_by_status(server: RunningServer, users: Users, api: Api, clock: FrozenClock) -> None:
    admin = await users.admin()
    applied_at = clock.now()
    first = await users.therapist(approved=False, display_name="Dr First")
    clock.advance(60)
    second = await users.therapist(approved=False, display_name="Dr Second")
    approved = await users.therapist()

    pending = expect(await api("GET", APPS, admin), 200).body["applications"]
    assert [a["id"] for a in pending] == [first.id, second.id]
    assert pending[0] == {
        "id": first.id, "display_name": "Dr First", "email": first.email, "email_verified": False,
        "qualifications": "MSc Counselling",
        "registration_body": "BACP", "registration_number": "123456", "insurance_provider": "Balens",
        "insurance_expiry": "2030-01-01", "applied_at": applied_at.isoformat(), "status": "pending",
        "reviewed_at": None, "reviewed_by": None,
    }
    assert expect(await api("GET", f"{APPS}?status=pending", admin), 200).body["applications"] == pending
    assert [a["id"] for a in expect(await api("GET", f"{APPS}?status=approved", admin), 200).body["applications"]] == [approved.id]
    assert expect(await api("GET", f"{APPS}?status=refused", admin), 200).body == {"applications": []}
    assert [a["id"] for a in expect(await api("GET", f"{APPS}?limit=1&offset=1", admin), 200).body["applications"]] == [second.id]
    for query, code in (("status=maybe", "invalid"), ("limit=-1", "invalid"), ("limit=x", "invalid"), ("sort=name", "unknown_field")):
        expect(await api("GET", f"{APPS}?{query}", admin), 400, code)


async def test_approval_lets_the_therapist_work_and_tells_them(server: RunningServer, users: Users, api: Api, clock: FrozenClock) -> None:
    admin, therapist = await users.admin(), await users.therapist(approved=False)
    expect(await api("PUT", "/api/me/availability", therapist, json={"available": True}), 403, "not_approved")

    await users.verify_email(therapist)
    reply = expect(await api("POST", f"{APPS}/{therapist.id}/approve", admin), 200).body
    assert (reply["status"], reply["reviewed_by"], reply["reviewed_at"]) == ("approved", admin.id, clock.now().isoformat())
    assert (await api.me(therapist))["therapist"]["status"] == "approved"
    expect(await api("PUT", "/api/me/availability", therapist, json={"available": True}), 200)
    [mail] = await outbox(server, therapist.email, "application_approved")
    assert "approved" in mail.body
    [event] = await audit_events(server, "application.approved", therapist.id)
    assert event.actor_id == admin.id and event.fields == ["reviewed_at", "reviewed_by", "status"]

    clock.advance(3600)
    again = expect(await api("POST", f"{APPS}/{therapist.id}/approve", admin), 200).body
    assert again == reply, "approving twice changes nothing"
    assert len(await outbox(server, therapist.email, "application_approved")) == 1
    assert len(await audit_events(server, "application.approved")) == 1


async def test_an_applicant_is_approved_only_once_their_email_is_verified(server: RunningServer, users: Users, api: Api) -> None:
    admin, therapist = await users.admin(), await users.therapist(approved=False)
    [listed] = expect(await api("GET", APPS, admin), 200).body["applications"]
    assert listed["email_verified"] is False, "the admin sees that the address is not verified"

    refused = expect(await api("POST", f"{APPS}/{therapist.id}/approve", admin), 409, "email_not_verified")
    assert "verified" in refused.body["error"]["message"]
    assert (await api.me(therapist))["therapist"]["status"] == "pending"
    assert await outbox(server, therapist.email, "application_approved") == []
    assert await audit_events(server, "application.approved") == []

    await users.verify_email(therapist)
    [listed] = expect(await api("GET", APPS, admin), 200).body["applications"]
    assert listed["email_verified"] is True
    assert expect(await api("POST", f"{APPS}/{therapist.id}/approve", admin), 200).body["status"] == "approved"


async def test_refusal_takes_the_therapist_off_the_pool(server: RunningServer, users: Users, api: Api) -> None:
    admin, therapist = await users.admin(), await users.therapist()
    expect(await api("PUT", "/api/me/availability", therapist, json={"available": True}), 200)
    code = expect(await api("POST", "/api/therapist/referral-codes", therapist), 201).body["code"]

    reply = expect(await api("POST", f"{APPS}/{therapist.id}/refuse", admin), 200).body
    assert reply["status"] == "refused"
    me = (await api.me(therapist))["therapist"]
    assert (me["status"], me["available"]) == ("refused", False)
    expect(await api("PUT", "/api/me/availability", therapist, json={"available": True}), 403, "not_approved")
    expect(await api("POST", "/api/therapist/referral-codes", therapist), 403, "not_approved")
    [listed] = expect(await api("GET", "/api/therapist/referral-codes", therapist), 200).body["codes"]
    assert listed["active"] is False
    body = {"email": "late@example.org", "password": "correct horse battery", "display_name": "Late",
            "date_of_birth": "1990-01-01", "referral_code": code}
    expect(await api("POST", "/api/auth/register", json=body), 400, "bad_referral_code")
    [mail] = await outbox(server, therapist.email, "application_refused")
    assert "could not approve" in mail.body
    [event] = await audit_events(server, "application.refused", therapist.id)
    assert event.fields == ["available", "reviewed_at", "reviewed_by", "status"]
    expect(await api("POST", f"{APPS}/{therapist.id}/refuse", admin), 200)
    assert len(await outbox(server, therapist.email, "application_refused")) == 1


async def test_a_decision_closes_the_therapists_open_sockets(server: RunningServer, users: Users, api: Api) -> None:
    admin, therapist = await users.admin(), await users.therapist()
    sock = socketio.AsyncClient(reconnection=False)
    await sock.connect(server.url, auth={"token": therapist.token}, transports=["websocket"], wait_timeout=5)
    try:
        assert (await sock.call("session.whoami", {}, timeout=5))["therapist_status"] == "approved"
        expect(await api("POST", f"{APPS}/{therapist.id}/refuse", admin), 200)
        await wait_for(lambda: not sock.connected)
    finally:
        await sock.disconnect()
    again = socketio.AsyncClient(reconnection=False)
    await again.connect(server.url, auth={"token": therapist.token}, transports=["websocket"], wait_timeout=5)
    try:
        assert (await again.call("session.whoami", {}, timeout=5))["therapist_status"] == "refused"
    finally:
        await again.disconnect()


async def test_unknown_applications_and_the_wrong_party(users: Users, api: Api) -> None:
    admin, client, pending = await users.admin(), await users.client(), await users.therapist(approved=False)
    approved = await users.therapist()
    for target in (client.id, admin.id, 999_999, "abc", 10**12):
        for action in ("approve", "refuse"):
            expect(await api("POST", f"{APPS}/{target}/{action}", admin), 404, "not_found")
    for user in (client, pending, approved):
        expect(await api("GET", APPS, user), 403, "forbidden")
        for action in ("approve", "refuse"):
            expect(await api("POST", f"{APPS}/{pending.id}/{action}", user), 403, "forbidden")
    expect(await api("GET", APPS), 401, "invalid_token")
    expect(await api("POST", f"{APPS}/{pending.id}/approve"), 401, "invalid_token")
    assert (await api.me(pending))["therapist"]["status"] == "pending"
    assert (await api.me(approved))["therapist"]["status"] == "approved"


async def test_review_on_both_databases(
    database_url: str, make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    running = await start_server(make_settings(database_url=database_url), clock=clock)
    try:
        api, users = Api(running, http), Users(running, http)
        admin, therapist = await users.admin(), await users.therapist(approved=False)
        expect(await api("POST", f"{APPS}/{therapist.id}/approve", admin), 409, "email_not_verified")
        await users.verify_email(therapist)
        expect(await api("POST", f"{APPS}/{therapist.id}/approve", admin), 200)
        expect(await api("PUT", "/api/me/availability", therapist, json={"available": True}), 200)
        expect(await api("POST", "/api/therapist/referral-codes", therapist), 201)
        expect(await api("POST", f"{APPS}/{therapist.id}/refuse", admin), 200)
        listed = expect(await api("GET", f"{APPS}?status=refused", admin), 200).body["applications"]
        assert [a["id"] for a in listed] == [therapist.id]
        me = (await api.me(therapist))["therapist"]
        assert (me["status"], me["available"]) == ("refused", False)
        assert [c["active"] for c in expect(await api("GET", "/api/therapist/referral-codes", therapist), 200).body["codes"]] == [False]
    finally:
        await running.runner.cleanup()
