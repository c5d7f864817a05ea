"""Joining a call, the announcements, chat, notes, leaving and rejoining, hang-up, and who may do any of it."""

from __future__ import annotations

import asyncio

import aiohttp
from sqlalchemy import text

from conftest import RunningServer, Users, open_call
from core.clock import FrozenClock
from signalling.events.calls import sweep_calls

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


async def setup_call(server: RunningServer, users: Users, sockets, *, recording: bool = True):
    t_user, c_user = await users.therapist(), await users.client()
    call_id = await open_call(server, t_user, c_user, recording_consent=recording)
    therapist, client = await sockets(server, t_user, "therapist"), await sockets(server, c_user, "client")
    return call_id, (t_user, therapist), (c_user, client)


async def test_joining_announces_the_other_side_and_hands_out_ice_servers(server: RunningServer, users: Users, sockets) -> None:
    call_id, (_, therapist), (_, client) = await setup_call(server, users, sockets)
    t_join = await therapist.call("call.join", {"call_id": call_id})
    assert t_join["ok"] and t_join["role"] == "therapist" and t_join["peer_present"] is False
    assert t_join["ice_servers"] == [] and t_join["ice_transport_policy"] == "all"
    assert t_join["notes"]["text"] == ""
    c_join = await client.call("call.join", {"call_id": call_id})
    assert c_join["role"] == "client" and c_join["peer_present"] is True and "notes" not in c_join
    assert (await therapist.next("call.peer_joined")) == {"call_id": call_id, "role": "client", "rejoined": False,
                                                           "joins": 1}


async def test_two_members_joining_at_once_each_learn_the_other_is_there(server: RunningServer, users: Users,
                                                                          sockets) -> None:
    """Whoever joined first (told no one is there yet) hears of the second, even when the second's join lands
    before the first's connection entered the call's room."""
    for _ in range(12):
        call_id, (_, therapist), (_, client) = await setup_call(server, users, sockets)
        acks = await asyncio.gather(therapist.call("call.join", {"call_id": call_id}),
                                    client.call("call.join", {"call_id": call_id}))
        assert sorted(ack["peer_present"] for ack in acks) == [False, True]
        first, second_role = (therapist, "client") if not acks[0]["peer_present"] else (client, "therapist")
        assert (await first.next("call.peer_joined"))["role"] == second_role
        for sock in (therapist, client):
            await sock.sio.disconnect()


async def test_signals_are_relayed_to_the_other_member_only(server: RunningServer, users: Users, sockets) -> None:
    call_id, (_, therapist), (_, client) = await setup_call(server, users, sockets)
    stranger = await sockets(server, await users.client(), "stranger")
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    assert (await client.call("call.signal", {"call_id": call_id, "kind": "offer", "sdp": SDP}))["delivered"] is True
    relayed = await therapist.next("call.signal")
    assert relayed == {"call_id": call_id, "from_role": "client", "kind": "offer", "sdp": SDP}
    cand = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    assert (await therapist.call("call.signal", {"call_id": call_id, "kind": "candidate", "candidate": cand}))["delivered"]
    assert (await client.next("call.signal"))["candidate"] == cand

    assert (await stranger.call("call.join", {"call_id": call_id}))["error"]["code"] == "forbidden"
    assert (await stranger.call("call.signal", {"call_id": call_id, "kind": "offer", "sdp": SDP}))["error"]["code"] == "forbidden"
    assert stranger.received("call.signal") == []


async def test_bad_signals_get_clear_errors_and_the_call_goes_on(server: RunningServer, users: Users, sockets) -> None:
    call_id, (_, therapist), (_, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    bad = [
        ({"kind": "shout"}, "invalid_signal"),
        ({"kind": "offer", "sdp": "hello"}, "invalid_sdp"),
        ({"kind": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 20000 + "m=audio"}, "too_large"),
        ({"kind": "candidate", "candidate": {"candidate": "not a candidate"}}, "invalid_signal"),
        ({"kind": "candidate", "candidate": {"candidate": "candidate:1", "sdpMLineIndex": "zero"}}, "invalid_signal"),
        ({"kind": "offer", "sdp": SDP, "extra": 1}, "unknown_field"),
    ]
    for body, code in bad:
        assert (await client.call("call.signal", {"call_id": call_id, **body}))["error"]["code"] == code, body
    assert (await client.call("call.signal", {"call_id": call_id, "kind": "offer", "sdp": SDP}))["delivered"]


async def test_non_loopback_candidates_are_dropped_in_loopback_mode(make_settings, clock: FrozenClock, http: aiohttp.ClientSession, sockets) -> None:
    from conftest import start_server

    running = await start_server(make_settings(ice_loopback_only=True), clock=clock)
    try:
        call_id, (_, therapist), (_, client) = await setup_call(running, Users(running, http), sockets)
        for sock in (therapist, client):
            await sock.call("call.join", {"call_id": call_id})
        remote = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
        mdns = {"candidate": "candidate:1 1 udp 2122260223 abc.local 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
        for cand in (remote, mdns):
            assert (await client.call("call.signal", {"call_id": call_id, "kind": "candidate", "candidate": cand}))["dropped"]
        assert therapist.received("call.signal") == []
        for sock in (therapist, client):
            await sock.close()
    finally:
        await running.runner.cleanup()


async def test_chat_is_ordered_acknowledged_encrypted_and_replayed_on_rejoin(server: RunningServer, users: Users, sockets, canary) -> None:
    call_id, (c_user_t, therapist), (c_user, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    sent = []
    for n in range(5):
        ack = await client.call("call.chat", {"call_id": call_id, "text": canary.text(f"msg {n} "), "client_ref": f"r{n}"})
        assert ack["ok"] and ack["message"]["sender_role"] == "client"
        sent.append(ack["message"]["id"])
    again = await client.call("call.chat", {"call_id": call_id, "text": canary.text("msg 0 "), "client_ref": "r0"})
    assert again["message"]["id"] == sent[0], "a retried send is stored once"
    await therapist.next("call.chat", lambda d: d["message"]["id"] == sent[-1])
    got = [d["message"]["id"] for d in therapist.received("call.chat")]
    assert got == sorted(got) and set(sent) <= set(got)
    reply = await therapist.call("call.chat", {"call_id": call_id, "text": "I hear you"})
    assert (await client.next("call.chat", lambda d: d["message"]["sender_role"] == "therapist"))["message"]["text"] == "I hear you"

    async with server.services.db.session() as session:
        rows = (await session.execute(text("SELECT body_enc FROM chat_messages"))).scalars().all()
    assert rows and all(canary.marker not in r and "I hear you" not in r for r in rows)

    await client.close()
    rejoined = await sockets(server, c_user, "client-again")
    history = (await rejoined.call("call.join", {"call_id": call_id}))["chat"]
    assert [m["id"] for m in history] == sent + [reply["message"]["id"]]
    assert (await therapist.next("call.peer_joined", lambda d: d["rejoined"]))["role"] == "client"


async def test_chat_limits(server: RunningServer, users: Users, sockets) -> None:
    call_id, (_, therapist), (_, client) = await setup_call(server, users, sockets)
    await client.call("call.join", {"call_id": call_id})
    too_long = "x" * (server.services.settings.max_chat_chars + 1)
    assert (await client.call("call.chat", {"call_id": call_id, "text": too_long}))["error"]["code"] == "too_long"
    assert (await client.call("call.chat", {"call_id": call_id, "text": "   "}))["error"]["code"] == "missing_field"
    codes = [(await client.call("call.chat", {"call_id": call_id, "text": f"{n}"})).get("error", {}).get("code") for n in range(35)]
    assert "rate_limited" in codes
    assert (await therapist.call("call.chat", {"call_id": call_id, "text": "still here"}))["ok"], "the other member is not affected"


async def test_notes_are_private_persistent_and_encrypted(server: RunningServer, users: Users, sockets, http: aiohttp.ClientSession, canary) -> None:
    call_id, (t_user, therapist), (c_user, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    first = await therapist.call("call.notes.save", {"call_id": call_id, "text": canary.text("note ")})
    assert first["ok"] and first["version"] == 1
    second = await therapist.call("call.notes.save", {"call_id": call_id, "text": canary.text("note v2 "), "base_version": 1})
    assert second["version"] == 2
    stale = await therapist.call("call.notes.save", {"call_id": call_id, "text": "old tab", "base_version": 1})
    assert stale["error"]["code"] == "stale_notes"
    assert (await client.call("call.notes.save", {"call_id": call_id, "text": "x"}))["error"]["code"] == "forbidden"
    assert (await client.call("call.notes.get", {"call_id": call_id}))["error"]["code"] == "forbidden"

    reloaded = await sockets(server, t_user, "therapist-reload")
    assert (await reloaded.call("call.join", {"call_id": call_id}))["notes"]["text"] == canary.text("note v2 ")

    async with http.get(f"{server.url}/api/calls/{call_id}", headers=c_user.headers) as resp:
        client_view = await resp.json()
    assert resp.status == 200 and "notes" not in client_view
    async with http.get(f"{server.url}/api/calls/{call_id}/notes", headers=c_user.headers) as resp:
        assert resp.status == 403
    async with http.get(f"{server.url}/api/calls/{call_id}", headers=t_user.headers) as resp:
        assert (await resp.json())["notes"]["text"] == canary.text("note v2 ")

    for event, payload in client.events:
        canary.saw((event, payload))
    canary.saw(client_view)
    async with server.services.db.session() as session:
        stored = (await session.execute(text("SELECT body_enc FROM call_notes"))).scalar_one()
    assert canary.marker not in stored


async def test_drop_and_rejoin_within_the_grace_period(server: RunningServer, users: Users, sockets, clock: FrozenClock) -> None:
    call_id, (_, therapist), (c_user, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    await client.close()
    left = await therapist.next("call.peer_left")
    assert left["role"] == "client" and left["grace_s"] == server.services.settings.call_rejoin_grace_s
    clock.advance(server.services.settings.call_rejoin_grace_s - 5)
    assert await sweep_calls(server.services) == 0
    back = await sockets(server, c_user, "client-back")
    assert (await back.call("call.join", {"call_id": call_id}))["ok"]
    # the join counts let a browser tell a late `peer_left` of the old connection from a new departure
    rejoined = await therapist.next("call.peer_joined", lambda d: d["rejoined"])
    assert left["joins"] == 1 and rejoined["joins"] == 2
    clock.advance(60)
    assert await sweep_calls(server.services) == 0, "back in time: the call carries on"


async def test_call_ends_after_the_grace_period(server: RunningServer, users: Users, sockets, clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    call_id, (t_user, therapist), (_, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    await client.close()
    await therapist.next("call.peer_left")
    clock.advance(server.services.settings.call_rejoin_grace_s + 1)
    assert await sweep_calls(server.services) == 1
    ended = await therapist.next("call.ended")
    assert ended["reason"] == "dropped" and ended["ended_by"] == "client", "the member who dropped is named"
    async with http.get(f"{server.url}/api/calls/{call_id}", headers=t_user.headers) as resp:
        detail = await resp.json()
    assert detail["status"] == "ended" and detail["end_reason"] == "dropped" and detail["ended_by"] == "client"


async def test_hang_up_ends_for_both_and_is_recorded(server: RunningServer, users: Users, sockets, clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    call_id, (t_user, therapist), (c_user, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    clock.advance(600)
    assert (await therapist.call("call.hangup", {"call_id": call_id}))["ok"]
    for sock in (therapist, client):
        ended = await sock.next("call.ended")
        assert ended["reason"] == "hangup" and ended["ended_by"] == "therapist"
    assert (await client.call("call.chat", {"call_id": call_id, "text": "hello?"}))["error"]["code"] == "call_ended"
    assert (await client.call("call.join", {"call_id": call_id}))["error"]["code"] == "call_ended"
    assert (await therapist.call("call.notes.save", {"call_id": call_id, "text": "written after"}))["ok"], \
        "notes can be written after the call"
    async with http.get(f"{server.url}/api/calls", headers=t_user.headers) as resp:
        [row] = (await resp.json())["calls"]
    assert row["id"] == call_id and row["duration_s"] == 600 and row["status"] == "ended"
    assert row["end_reason"] == "hangup" and row["ended_by"] == "therapist"
    assert row["with"]["id"] == c_user.id
    async with http.get(f"{server.url}/api/clients", headers=t_user.headers) as resp:
        [entry] = (await resp.json())["clients"]
    assert entry["client"]["id"] == c_user.id and [c["id"] for c in entry["calls"]] == [call_id]
    async with http.get(f"{server.url}/api/calls", headers=c_user.headers) as resp:
        [mine] = (await resp.json())["calls"]
    assert mine["id"] == call_id and mine["ended_by"] == "therapist", "the client sees who ended it too"


async def test_strangers_cannot_read_a_call(server: RunningServer, users: Users, sockets, http: aiohttp.ClientSession) -> None:
    call_id, _, _ = await setup_call(server, users, sockets)
    for stranger in (await users.client(), await users.therapist()):
        async with http.get(f"{server.url}/api/calls/{call_id}", headers=stranger.headers) as resp:
            assert resp.status == 403
        async with http.get(f"{server.url}/api/calls", headers=stranger.headers) as resp:
            assert (await resp.json())["calls"] == []


async def test_a_second_tab_takes_over_the_place(server: RunningServer, users: Users, sockets) -> None:
    call_id, (t_user, therapist), (_, client) = await setup_call(server, users, sockets)
    await therapist.call("call.join", {"call_id": call_id})
    tab = await sockets(server, t_user, "therapist-tab")
    await tab.call("call.join", {"call_id": call_id})
    await therapist.next("call.replaced")
    await client.call("call.join", {"call_id": call_id})
    assert (await therapist.call("call.signal", {"call_id": call_id, "kind": "offer", "sdp": SDP}))["error"]["code"] == "not_joined"


async def test_admin_opens_a_test_call_with_a_demo_client(server: RunningServer, users: Users, sockets, http: aiohttp.ClientSession) -> None:
    admin, t_user = await users.admin(), await users.therapist()
    therapist = await sockets(server, t_user)
    async with http.post(f"{server.url}/api/admin/test-calls", headers=admin.headers, json={"therapist_id": t_user.id}) as resp:
        opened = await resp.json()
    assert resp.status == 201 and opened["call"]["kind"] == "test"
    assert (await therapist.next("call.ready"))["call"]["id"] == opened["call"]["id"]
    from conftest import User

    demo = await sockets(server, User(opened["demo_client"]["id"], "", opened["demo_client"]["token"], "client"))
    assert (await demo.call("call.join", {"call_id": opened["call"]["id"]}))["role"] == "client"
    async with http.post(f"{server.url}/api/admin/test-calls", headers=t_user.headers, json={"therapist_id": t_user.id}) as resp:
        assert resp.status == 403


async def test_a_member_who_never_joins_ends_the_call_as_a_no_show(server: RunningServer, users: Users, sockets, clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    call_id, (t_user, therapist), (c_user, _) = await setup_call(server, users, sockets)
    await therapist.call("call.join", {"call_id": call_id})
    timeout = server.services.settings.call_join_timeout_s
    clock.advance(timeout - 1)
    assert await sweep_calls(server.services) == 0, "still within the join timeout"
    assert therapist.received("call.ended") == []
    clock.advance(2)
    assert await sweep_calls(server.services) == 1
    ended = await therapist.next("call.ended")
    assert ended["reason"] == "no_show" and ended["ended_by"] == "client", "the member who is there is told why"
    async with http.get(f"{server.url}/api/calls/{call_id}", headers=t_user.headers) as resp:
        detail = await resp.json()
    assert detail["status"] == "ended" and detail["end_reason"] == "no_show" and detail["ended_by"] == "client"
    async with http.get(f"{server.url}/api/calls", headers=c_user.headers) as resp:
        [row] = (await resp.json())["calls"]
    assert row["end_reason"] == "no_show" and row["ended_by"] == "client"


async def test_a_call_nobody_joins_ends_as_a_no_show_of_both(server: RunningServer, users: Users, sockets, clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    call_id, (t_user, _), _ = await setup_call(server, users, sockets)
    clock.advance(server.services.settings.call_join_timeout_s + 1)
    assert await sweep_calls(server.services) == 1
    async with http.get(f"{server.url}/api/calls/{call_id}", headers=t_user.headers) as resp:
        detail = await resp.json()
    assert detail["end_reason"] == "no_show" and detail["ended_by"] is None


async def test_a_test_call_waits_longer_for_its_demo_client(server: RunningServer, users: Users, sockets, clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    admin, t_user = await users.admin(), await users.therapist()
    therapist = await sockets(server, t_user)
    async with http.post(f"{server.url}/api/admin/test-calls", headers=admin.headers, json={"therapist_id": t_user.id}) as resp:
        call_id = (await resp.json())["call"]["id"]
    await therapist.call("call.join", {"call_id": call_id})
    settings = server.services.settings
    assert settings.call_test_join_timeout_s > settings.call_join_timeout_s
    clock.advance(settings.call_join_timeout_s + 1)
    assert await sweep_calls(server.services) == 0, "the therapist opens the demo client's link when they are ready"
    clock.advance(settings.call_test_join_timeout_s - settings.call_join_timeout_s)
    assert await sweep_calls(server.services) == 1
    assert (await therapist.next("call.ended"))["reason"] == "no_show"


async def test_an_ice_restart_offer_is_relayed_mid_call_and_the_call_goes_on(server: RunningServer, users: Users, sockets, clock: FrozenClock) -> None:
    from calls.models import CallMember, CallStatus
    from calls.membership import load_call

    call_id, (_, therapist), (_, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    assert (await client.call("call.signal", {"call_id": call_id, "kind": "offer", "sdp": SDP}))["delivered"]
    assert (await therapist.call("call.signal", {"call_id": call_id, "kind": "answer", "sdp": SDP}))["delivered"]
    for sock in (therapist, client):
        assert (await sock.call("call.media_state", {"call_id": call_id, "connected": True}))["ok"]
    before = {m.role: (m.sid, m.joins, m.away_since) for m in (await load_call(server.services.calls, call_id)).members}
    clock.advance(30)

    restart = {"call_id": call_id, "kind": "offer", "sdp": SDP + "a=ice-ufrag:new\r\n", "ice_restart": True}
    assert (await therapist.call("call.signal", restart))["delivered"] is True
    relayed = await client.next("call.signal", lambda d: d.get("ice_restart"))
    assert relayed == {"call_id": call_id, "from_role": "therapist", "kind": "offer", "sdp": restart["sdp"],
                       "ice_restart": True}
    assert (await client.call("call.signal", {"call_id": call_id, "kind": "answer", "sdp": SDP}))["delivered"]
    await therapist.next("call.signal", lambda d: d["kind"] == "answer")

    call = await load_call(server.services.calls, call_id)
    assert call is not None and call.status is CallStatus.open
    assert {m.role: (m.sid, m.joins, m.away_since) for m in call.members} == before, "membership untouched"
    assert all(isinstance(m, CallMember) and m.media_connected_since is not None for m in call.members)
    for sock in (therapist, client):
        assert sock.received("call.peer_left") == [] and sock.received("call.ended") == []
    assert await sweep_calls(server.services) == 0
    assert (await client.call("call.chat", {"call_id": call_id, "text": "still with you"}))["ok"]


async def test_signals_from_one_connection_arrive_in_the_order_they_were_sent(server: RunningServer, users: Users, sockets) -> None:
    import asyncio

    from signalling.events.calls import SIGNAL_ORDER

    call_id, (_, therapist), (_, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    sent = [{"call_id": call_id, "kind": "offer", "sdp": SDP}]
    sent += [{"call_id": call_id, "kind": "candidate",
              "candidate": {"candidate": f"candidate:{n} 1 udp 2122260223 127.0.0.1 {40000 + n} typ host",
                            "sdpMid": "0", "sdpMLineIndex": 0}} for n in range(25)]
    sent.append({"call_id": call_id, "kind": "candidate", "candidate": None})
    acks: list[asyncio.Future] = []
    for message in sent:  # as a browser does: the next one goes before the previous one is acknowledged
        ack = asyncio.get_running_loop().create_future()
        acks.append(ack)
        await client.sio.emit("call.signal", message, callback=lambda reply, f=ack: f.set_result(reply))
    replies = await asyncio.wait_for(asyncio.gather(*acks), 15)
    assert all(r["ok"] and r["delivered"] for r in replies), replies
    await therapist.next("call.signal", lambda d: d["kind"] == "candidate" and d["candidate"] is None)
    got = therapist.received("call.signal")
    assert [d["kind"] for d in got] == [m["kind"] for m in sent]
    assert [d.get("candidate") for d in got[1:]] == [m["candidate"] for m in sent[1:]], "relayed in send order"

    held = len(SIGNAL_ORDER)
    await client.close()
    await therapist.next("call.peer_left")
    assert len(SIGNAL_ORDER) == held - 1, "the connection's lock is dropped when it closes"


async def test_only_the_joined_window_may_open_the_server_audio_link(server: RunningServer, users: Users, sockets) -> None:
    call_id, (_, therapist), (c_user, client) = await setup_call(server, users, sockets)
    for sock in (therapist, client):
        await sock.call("call.join", {"call_id": call_id})
    other_window = await sockets(server, c_user, "client-second-window")
    ack = await other_window.call("call.media.offer", {"call_id": call_id, "sdp": SDP})
    assert ack["error"]["code"] == "not_joined"
    assert server.services.media.consumers(call_id) == {}, "no server peer was made for it"
