"""The Socket.IO handshake: the account token in the `auth` payload, nothing else, gets a connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import socketio

from conftest import LogCapture, RunningServer, Users, wait_for
from core.clock import FrozenClock
from core.logging import configure_logging


async def connect(server: RunningServer, auth: Any, **kwargs: Any) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(server.url, auth=auth, transports=["websocket"], wait_timeout=5, **kwargs)
    return client


async def refused(server: RunningServer, auth: Any) -> str:
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, auth=auth, transports=["websocket"], wait_timeout=5)
    await client.disconnect()
    assert errors, "the server said why"
    return errors[0]["data"]["code"]


async def test_token_in_auth_payload_connects(server: RunningServer, users: Users) -> None:
    therapist = await users.therapist(approved=False)
    client = await connect(server, {"token": therapist.token})
    try:
        reply = await client.call("session.whoami", {}, timeout=5)
        assert reply == {"ok": True, "user_id": therapist.id, "role": "therapist", "therapist_status": "pending"}
    finally:
        await client.disconnect()


async def test_forged_missing_expired_and_revoked_tokens_are_refused(
    server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock
) -> None:
    client = await users.client()
    assert await refused(server, {"token": "forged"}) == "invalid_token"
    assert await refused(server, None) == "invalid_token"
    assert await refused(server, {"token": 12}) == "invalid_token"

    async with http.post(f"{server.url}/api/auth/signout", headers=client.headers) as resp:
        assert resp.status == 204
    assert await refused(server, {"token": client.token}) == "invalid_token"

    other = await users.client()
    clock.advance(server.services.settings.token_ttl_s + 1)
    assert await refused(server, {"token": other.token}) == "invalid_token"


async def test_token_in_the_url_is_not_accepted(server: RunningServer, users: Users) -> None:
    client = await users.client()
    sio = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(f"{server.url}?token={client.token}", transports=["websocket"], wait_timeout=5)
    await sio.disconnect()


async def test_signout_disconnects_that_sessions_sockets_only(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    async with http.post(f"{server.url}/api/auth/signin", json={"email": client.email, "password": "correct horse battery"}) as resp:
        other_token = (await resp.json())["token"]
    tab_a = await connect(server, {"token": client.token})
    tab_b = await connect(server, {"token": client.token})
    phone = await connect(server, {"token": other_token})
    try:
        async with http.post(f"{server.url}/api/auth/signout", headers=client.headers) as resp:
            assert resp.status == 204
        await wait_for(lambda: not tab_a.connected and not tab_b.connected)
        await asyncio.sleep(0.1)
        assert phone.connected
        assert (await phone.call("session.ping", {}, timeout=5))["ok"] is True
    finally:
        for c in (tab_a, tab_b, phone):
            await c.disconnect()


async def test_unknown_and_malformed_events_get_error_acks(server: RunningServer, users: Users) -> None:
    client = await users.client()
    sio = await connect(server, {"token": client.token})
    try:
        assert (await sio.call("no.such.event", {}, timeout=5))["error"]["code"] == "unknown_event"
        assert (await sio.call("session.ping", [1, 2], timeout=5))["error"]["code"] == "invalid_payload"
        assert (await sio.call("session.ping", "text", timeout=5))["error"]["code"] == "invalid_payload"
        assert (await sio.call("session.ping", {}, timeout=5))["ok"] is True, "the connection keeps working"
    finally:
        await sio.disconnect()


async def test_socket_origin_must_be_allowed(server: RunningServer, users: Users, http: aiohttp.ClientSession) -> None:
    client = await users.client()
    sio = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(server.url, auth={"token": client.token}, transports=["websocket"],
                          headers={"Origin": "https://evil.example"}, wait_timeout=5)
    await sio.disconnect()
    # why: Engine.IO refuses the handshake for the origin, before any token is looked at
    handshake = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with http.get(handshake, headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 400 and "https://evil.example is not an accepted origin" in await resp.text()
    allowed = server.services.settings.effective_allowed_origins[0]
    async with http.get(handshake, headers={"Origin": allowed}) as resp:
        assert resp.status == 200
    same = await connect(server, {"token": client.token}, headers={"Origin": allowed})
    await same.disconnect()


async def test_a_socket_connection_slides_the_token(server: RunningServer, users: Users, http: aiohttp.ClientSession, clock: FrozenClock) -> None:
    """A user whose page only holds its Socket.IO connection (reconnecting now and then) keeps a live token."""
    client = await users.client()
    ttl = server.services.settings.token_ttl_s
    clock.advance(ttl * 0.6)
    sio = await connect(server, {"token": client.token})
    await sio.disconnect()
    clock.advance(ttl * 0.6)  # past the token's first expiry
    sio = await connect(server, {"token": client.token})
    await sio.disconnect()
    async with http.get(f"{server.url}/api/me", headers=client.headers) as resp:
        assert resp.status == 200


async def test_socketio_and_engineio_loggers_stay_quiet(server: RunningServer, users: Users, captured_logs: LogCapture) -> None:
    configure_logging("info", json=True, stream=captured_logs)
    client = await users.client()
    sio = await connect(server, {"token": client.token})
    try:
        assert (await sio.call("session.ping", {}, timeout=5))["ok"] is True
    finally:
        await sio.disconnect()
    await wait_for(lambda: "socket.disconnected" in captured_logs.getvalue())
    records = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.strip()]
    assert any(r["event"] == "socket.connected" for r in records), "our own line is there"
    noisy = [r for r in records if str(r.get("logger", "")).split(".")[0] in ("socketio", "engineio")]
    assert noisy == [], noisy
