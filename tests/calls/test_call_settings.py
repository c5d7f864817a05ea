"""ICE servers with short-lived TURN credentials, relay-only calls, heartbeats, and a call that survives a server
process restart (the state lives in the database)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import Callable

import aiohttp

from conftest import Sock, Users, open_call, start_server
from core.clock import FrozenClock
from core.settings import Settings


async def test_members_get_turn_credentials_for_their_call_and_relay_only_policy(
    make_settings: Callable[..., Settings], http: aiohttp.ClientSession, sockets
) -> None:
    secret = "coturn-shared-secret"
    running = await start_server(make_settings(stun_urls="stun:stun.example.org:3478", turn_urls="turn:turn.example.org:3478",
                                               turn_secret=secret, ice_relay_only=True))
    try:
        users = Users(running, http)
        t_user, c_user, stranger = await users.therapist(), await users.client(), await users.client()
        call_id = await open_call(running, t_user, c_user)
        member, outsider = await sockets(running, c_user), await sockets(running, stranger)
        ack = await member.call("call.join", {"call_id": call_id})
        assert ack["ice_transport_policy"] == "relay"
        stun, turn = ack["ice_servers"]
        assert stun == {"urls": ["stun:stun.example.org:3478"]}
        expiry, who = turn["username"].split(":")
        assert who == f"c{call_id}u{c_user.id}" and int(expiry) > time.time()
        expected = base64.b64encode(hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()).decode()
        assert turn["credential"] == expected
        refused = await outsider.call("call.join", {"call_id": call_id})
        assert refused["error"]["code"] == "forbidden" and "ice_servers" not in refused
        for sock in (member, outsider):
            await sock.close()
    finally:
        await running.runner.cleanup()


async def test_a_connection_that_stops_answering_heartbeats_is_marked_away(
    make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession, sockets
) -> None:
    """The transport of a dead connection stays open (no goodbye); only the heartbeats tell. The defaults
    (`socket_ping_interval_s` 5 + `socket_ping_timeout_s` 10) notice it within 15 s; here they are shortened."""
    from engineio import packet

    from calls.membership import load_call

    defaults = make_settings()
    assert defaults.socket_ping_interval_s + defaults.socket_ping_timeout_s <= 15
    running = await start_server(make_settings(socket_ping_interval_s=0.2, socket_ping_timeout_s=0.3), clock=clock)
    try:
        users = Users(running, http)
        t_user, c_user = await users.therapist(), await users.client()
        call_id = await open_call(running, t_user, c_user)
        therapist, client = await sockets(running, t_user, "therapist"), await sockets(running, c_user, "client")
        for sock in (therapist, client):
            assert (await sock.call("call.join", {"call_id": call_id}))["ok"]
        await asyncio.sleep(1)  # several heartbeats answered: a live connection is left alone
        assert therapist.received("call.peer_left") == []

        send = client.sio.eio._send_packet

        async def no_pong(pkt: packet.Packet) -> None:  # the client's machine is gone: nothing answers the pings
            if pkt.packet_type != packet.PONG:
                await send(pkt)

        client.sio.eio._send_packet = no_pong
        left = await therapist.next("call.peer_left", timeout=20)
        assert left["role"] == "client" and left["grace_s"] == running.services.settings.call_rejoin_grace_s
        call = await load_call(running.services.calls, call_id)
        assert call is not None
        away = call.member(c_user.id)
        assert away is not None and away.sid is None and away.away_since == clock.now(), "the grace period runs"
        therapist_place = call.member(t_user.id)
        assert therapist_place is not None and therapist_place.sid is not None and therapist_place.away_since is None
    finally:
        await running.runner.cleanup()


async def test_a_call_carries_on_after_the_server_process_restarts(
    make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession
) -> None:
    settings = make_settings()
    first = await start_server(settings, clock=clock)
    users = Users(first, http)
    t_user, c_user = await users.therapist(), await users.client()
    call_id = await open_call(first, t_user, c_user)
    therapist, client = await Sock(first.url, t_user.token).connect(), await Sock(first.url, c_user.token).connect()
    await therapist.call("call.join", {"call_id": call_id})
    await client.call("call.join", {"call_id": call_id})
    sent = await client.call("call.chat", {"call_id": call_id, "text": "before the restart"})
    await first.runner.cleanup()
    await therapist.close()
    await client.close()

    second = await start_server(settings, clock=clock)
    try:
        therapist, client = await Sock(second.url, t_user.token).connect(), await Sock(second.url, c_user.token).connect()
        rejoined = await client.call("call.join", {"call_id": call_id})
        assert rejoined["ok"] and [m["id"] for m in rejoined["chat"]] == [sent["message"]["id"]]
        assert (await therapist.call("call.join", {"call_id": call_id}))["peer_present"] is True
        assert (await therapist.call("call.chat", {"call_id": call_id, "text": "after"}))["ok"]
        await client.next("call.chat", lambda d: d["message"]["text"] == "after")
        await therapist.close()
        await client.close()
    finally:
        await second.runner.cleanup()
