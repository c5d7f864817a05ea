"""Failures on our side: a 500 (or an `internal`-class ack) with a stable code, one error log line naming the code
and never the data; and `/healthz` when the database is gone."""

from __future__ import annotations

import json
from typing import Any, Callable

import aiohttp

from calls.models import CallNote
from conftest import Canary, RunningServer, Users, open_call, start_server
from core.clock import FrozenClock
from core.settings import Settings


async def tamper_with_notes(server: RunningServer, call_id: int) -> str:
    """Flip one character of the stored ciphertext, as a damaged disk or a hand-edited row would; returns it."""
    async with server.services.db.transaction() as session:
        note = await session.get(CallNote, call_id)
        assert note is not None
        head, last = note.body_enc[:-2], note.body_enc[-2]
        note.body_enc = head + ("A" if last != "A" else "B") + note.body_enc[-1]
        return note.body_enc


def error_lines(logs: str) -> list[dict[str, Any]]:
    return [r for r in (json.loads(line) for line in logs.splitlines() if line.strip()) if r.get("level") == "error"]


async def test_a_tampered_row_is_a_500_with_a_code_and_one_error_line(
    server: RunningServer, users: Users, http: aiohttp.ClientSession, sockets, canary: Canary
) -> None:
    therapist, client = await users.therapist(), await users.client()
    call_id = await open_call(server, therapist, client)
    url = f"{server.url}/api/calls/{call_id}/notes"
    async with http.put(url, json={"text": canary.text("notes ")}, headers=therapist.headers) as resp:
        assert resp.status == 200
    stored = await tamper_with_notes(server, call_id)
    before = len(canary.logs.getvalue())

    async with http.get(url, headers=therapist.headers) as resp:
        assert resp.status == 500
        assert (await resp.json())["error"]["code"] == "decryption_failed"
    [line] = error_lines(canary.logs.getvalue()[before:])
    assert (line["event"], line["code"], line["route"]) == ("http.server_error", "decryption_failed", "/api/calls/{id}/notes")

    sock = await sockets(server, therapist)
    before = len(canary.logs.getvalue())
    ack = await sock.call("call.notes.get", {"call_id": call_id})
    assert (ack["ok"], ack["error"]["code"]) == (False, "decryption_failed")
    [line] = error_lines(canary.logs.getvalue()[before:])
    assert (line["event"], line["code"], line["socket_event"]) == ("socket.server_error", "decryption_failed", "call.notes.get")
    assert stored not in canary.logs.getvalue(), "the ciphertext is not logged either"


async def test_client_errors_are_not_logged_as_errors(server: RunningServer, users: Users, http: aiohttp.ClientSession, captured_logs) -> None:
    client = await users.client()
    async with http.get(f"{server.url}/api/calls/999999/notes", headers=client.headers) as resp:
        assert resp.status == 403
    assert error_lines(captured_logs.getvalue()) == []


async def test_healthz_says_when_the_database_is_unreachable(make_settings: Callable[..., Settings], clock: FrozenClock,
                                                            http: aiohttp.ClientSession) -> None:
    # a PostgreSQL URL on a port nothing listens on (port 1 of loopback); nothing is migrated at start-up
    settings = make_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/nothing", migrate_on_start=False)
    running = await start_server(settings, clock=clock)
    try:
        async with http.get(f"{running.url}/healthz") as resp:
            assert resp.status == 503
            body = await resp.json()
        assert (body["status"], body["database"]) == ("unhealthy", "unreachable")
    finally:
        await running.runner.cleanup()
