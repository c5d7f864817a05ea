"""Saving account details (PATCH /api/me) and a therapist going available (PUT /api/me/availability)."""

from __future__ import annotations

from typing import Callable

import aiohttp

from accounts_api import Api, api, audit_events, expect  # noqa: F401 - `api` is a fixture
from conftest import Canary, RunningServer, Users, start_server
from core.clock import FrozenClock
from core.settings import Settings


async def test_client_changes_display_name_and_it_is_audited(server: RunningServer, users: Users, api: Api) -> None:
    client = await users.client(display_name="Casey")
    reply = expect(await api("PATCH", "/api/me", client, json={"display_name": "  Casey Jones "}), 200)
    assert reply.body["display_name"] == "Casey Jones"
    assert reply.body["client"]["date_of_birth"] == "1990-05-17", "the whole account comes back"
    assert (await api.me(client))["display_name"] == "Casey Jones"
    [event] = await audit_events(server, "account.updated", client.id)
    assert (event.actor_id, event.fields) == (client.id, ["display_name"])


async def test_therapist_saves_profile_while_pending(server: RunningServer, users: Users, api: Api, canary: Canary) -> None:
    therapist = await users.therapist(approved=False)
    changes = {"display_name": "Dr Tess Ray", "bio": canary.text("I work with teenagers.\n"),
               "expertise": ["grief", "anxiety", canary.text()], "rate_pence_per_minute": 150, "phone": "+44 7700 900123"}
    reply = expect(await api("PATCH", "/api/me", therapist, json=changes), 200)
    saved = (await api.me(therapist))["therapist"]
    assert reply.body["therapist"] == saved
    assert saved["status"] == "pending"
    assert saved["bio"] == changes["bio"]
    assert saved["expertise"] == changes["expertise"]
    assert (saved["rate_pence_per_minute"], saved["phone"]) == (150, "+447700900123")
    [event] = await audit_events(server, "account.updated", therapist.id)
    assert event.fields == ["bio", "display_name", "expertise", "phone", "rate_pence_per_minute"]
    assert canary.marker not in repr(event.fields)


async def test_unchanged_values_and_an_empty_body_record_nothing(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist()
    expect(await api("PATCH", "/api/me", therapist, json={"bio": "I listen.", "rate_pence_per_minute": 100}), 200)
    expect(await api("PATCH", "/api/me", therapist, json={}), 200)
    assert await audit_events(server, "account.updated", therapist.id) == []


async def test_client_cannot_set_therapist_fields_or_a_role(users: Users, api: Api) -> None:
    client = await users.client()
    before = await api.me(client)
    for body in ({"display_name": "New", "bio": "hello"}, {"role": "admin"}, {"display_name": "New", "email": "x@example.org"},
                 {"rate_pence_per_minute": 1}):
        reply = expect(await api("PATCH", "/api/me", client, json=body), 400, "unknown_field")
        assert reply.body["error"]["details"]["fields"]
    assert await api.me(client) == before


BAD_PROFILE_CHANGES = [
    ({"display_name": ""}, "missing_field"),
    ({"display_name": "A" * 81}, "too_long"),
    ({"display_name": "line\nbreak"}, "invalid"),
    ({"display_name": None}, "missing_field"),
    ({"bio": "x" * 4001}, "too_long"),
    ({"bio": 12}, "invalid"),
    ({"expertise": "anxiety"}, "invalid"),
    ({"expertise": ["x"] * 21}, "too_long"),
    ({"rate_pence_per_minute": -1}, "invalid"),
    ({"rate_pence_per_minute": "150"}, "invalid"),
    ({"rate_pence_per_minute": 1.5}, "invalid"),
    ({"rate_pence_per_minute": True}, "invalid"),
    ({"phone": "07700 900123"}, "invalid"),
    ({"bio": "fine", "status": "approved"}, "unknown_field"),
    ({"bio": "fine", "available": True}, "unknown_field"),
    ({"bio": "fine", "picture": "data:..."}, "unknown_field"),
]


async def test_bad_profile_changes_get_a_code_and_change_nothing(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist(approved=False)
    before = await api.me(therapist)
    for body, code in BAD_PROFILE_CHANGES:
        # A valid field beside the bad one must not be saved either.
        expect(await api("PATCH", "/api/me", therapist, json={"display_name": "Changed", **body}), 400, code)
    assert await api.me(therapist) == before
    assert await audit_events(server, "account.updated") == []


async def test_malformed_and_unauthenticated_requests(users: Users, api: Api) -> None:
    client = await users.client()
    expect(await api("PATCH", "/api/me", json={"display_name": "X"}), 401, "invalid_token")
    expect(await api("PATCH", "/api/me", headers={"Authorization": "Bearer forged"}, json={"display_name": "X"}),
           401, "invalid_token")
    expect(await api("PATCH", "/api/me", client, data=b"{nope", headers={"Content-Type": "application/json"}),
           400, "invalid_json")
    expect(await api("PATCH", "/api/me", client, data=b"display_name=X"), 415, "unsupported_media")
    expect(await api("PATCH", "/api/me", client, json=["display_name"]), 400, "invalid_json")
    assert (await api.me(client))["display_name"] == "Casey"


async def test_approved_therapist_goes_available_and_back(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist()
    assert expect(await api("PUT", "/api/me/availability", therapist, json={"available": True}), 200).body == {"available": True}
    assert (await api.me(therapist))["therapist"]["available"] is True
    expect(await api("PUT", "/api/me/availability", therapist, json={"available": False}), 200)
    assert (await api.me(therapist))["therapist"]["available"] is False
    events = await audit_events(server, "therapist.availability_changed", therapist.id)
    assert [e.fields for e in events] == [["available"], ["available"]]


async def test_availability_needs_an_approved_therapist_and_a_boolean(users: Users, api: Api) -> None:
    pending = await users.therapist(approved=False)
    client = await users.client()
    approved = await users.therapist()
    expect(await api("PUT", "/api/me/availability", pending, json={"available": True}), 403, "not_approved")
    expect(await api("PUT", "/api/me/availability", client, json={"available": True}), 403, "forbidden")
    expect(await api("PUT", "/api/me/availability", json={"available": True}), 401, "invalid_token")
    for body, code in (({}, "missing_field"), ({"available": "yes"}, "invalid"), ({"available": 1}, "invalid"),
                       ({"available": True, "until": "later"}, "unknown_field")):
        expect(await api("PUT", "/api/me/availability", approved, json=body), 400, code)
    assert (await api.me(pending))["therapist"]["available"] is False
    assert (await api.me(approved))["therapist"]["available"] is False


async def test_profile_changes_on_both_databases(
    database_url: str, make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    running = await start_server(make_settings(database_url=database_url), clock=clock)
    try:
        api, users = Api(running, http), Users(running, http)
        therapist = await users.therapist()
        expect(await api("PATCH", "/api/me", therapist, json={"bio": "New bio", "expertise": ["grief"]}), 200)
        expect(await api("PUT", "/api/me/availability", therapist, json={"available": True}), 200)
        saved = (await api.me(therapist))["therapist"]
        assert (saved["bio"], saved["expertise"], saved["available"]) == ("New bio", ["grief"], True)
    finally:
        await running.runner.cleanup()
