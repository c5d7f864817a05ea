"""Two real WebRTC peers (aiortc, standing in for the browsers) connect through the server's relay on loopback and
exchange media; each also connects its audio-only link to the server, which receives both members' audio."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from aiortc.rtcicetransport import RTCIceGatherer

from benchmarks._peers import SimulatedMember
from conftest import REDIS_URL, RunningServer, Sock, Users, open_call, start_server, wait_for
from core.clock import FrozenClock
from core.settings import Settings
from media.addresses import use_host_addresses
from media.consumers import LevelMeter


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ICE path stays on loopback: the peers gather 127.0.0.1 only, and aiortc's peers made without a
    configuration (the simulated browsers' own) use no STUN server instead of Google's public one."""
    monkeypatch.setattr(RTCIceGatherer, "getDefaultIceServers", classmethod(lambda cls: []))
    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses([])


def loopback_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(ice_loopback_only=True, media_host_addresses="127.0.0.1", **overrides)


@pytest.fixture
async def server(make_settings: Callable[..., Settings], clock: FrozenClock) -> AsyncIterator[RunningServer]:
    """The whole app with the relay and the server's audio peers kept on loopback, as the benchmark runs it."""
    running = await start_server(loopback_settings(make_settings), clock=clock)
    try:
        yield running
    finally:
        await running.runner.cleanup()


async def members(server: RunningServer, users: Users, recording: bool) -> tuple[int, SimulatedMember, SimulatedMember]:
    t_user, c_user = await users.therapist(), await users.client()
    call_id = await open_call(server, t_user, c_user, recording_consent=recording)
    return call_id, await SimulatedMember(server.url, t_user.token).connect(), await SimulatedMember(server.url, c_user.token).connect()


async def test_peers_connect_exchange_media_and_the_server_hears_both(server: RunningServer, users: Users) -> None:
    call_id, therapist, client = await members(server, users, recording=True)
    try:
        await therapist.join(call_id)
        await client.join(call_id)
        await wait_for(lambda: therapist.connected_at and client.connected_at, timeout=15)
        await wait_for(lambda: all(m.received.frames["audio"] > 10 and m.received.frames["video"] > 3
                                   for m in (therapist, client)), timeout=15)
        assert not therapist.errors and not client.errors

        for member in (therapist, client):
            assert (await member.open_server_link())["ok"]
        consumers = server.services.media.consumers(call_id)
        await wait_for(lambda: set(consumers) == {"therapist", "client"}
                       and all(isinstance(c, LevelMeter) and c.frames > 25 for c in consumers.values()), timeout=15)
        for meter in consumers.values():
            assert isinstance(meter, LevelMeter) and meter.peak_dbfs > -30, "the tone arrives at its level"
    finally:
        await therapist.close()
        await client.close()


async def test_no_audio_reaches_the_server_without_consent(server: RunningServer, users: Users) -> None:
    call_id, therapist, client = await members(server, users, recording=False)
    try:
        await therapist.join(call_id)
        await client.join(call_id)
        ack = await client.open_server_link()
        assert ack["ok"] is False and ack["error"]["code"] == "no_consent"
        assert server.services.media.consumers(call_id) == {}
    finally:
        await therapist.close()
        await client.close()


async def test_a_new_offer_replaces_the_server_peer_after_a_network_change(server: RunningServer, users: Users) -> None:
    call_id, therapist, client = await members(server, users, recording=True)
    try:
        await therapist.join(call_id)
        await client.join(call_id)
        await client.open_server_link()
        first = server.services.media.consumers(call_id)["client"]
        await wait_for(lambda: first.frames > 5, timeout=15)
        old_link = client.server_link
        await client.open_server_link()
        assert old_link is not None
        await old_link.close()
        second = server.services.media.consumers(call_id)["client"]
        assert second is not first and isinstance(first, LevelMeter) and first.closed
        await wait_for(lambda: second.frames > 5, timeout=15)
    finally:
        await therapist.close()
        await client.close()


async def test_video_offers_to_the_server_are_refused(server: RunningServer, users: Users) -> None:
    call_id, therapist, client = await members(server, users, recording=True)
    try:
        await client.join(call_id)
        from aiortc import RTCPeerConnection, VideoStreamTrack

        pc = RTCPeerConnection()
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        ack = await client.call("call.media.offer", {"call_id": call_id, "sdp": pc.localDescription.sdp})
        await pc.close()
        assert ack["error"]["code"] == "audio_only"
    finally:
        await therapist.close()
        await client.close()
        await asyncio.sleep(0)


async def test_ending_a_call_closes_the_server_audio_peers_in_every_process(
    make_settings: Callable[..., Settings], postgres_url: str, redis_prefix: str, http: aiohttp.ClientSession
) -> None:
    """Two server processes on one database and Redis: the client's audio link lives in one, the therapist hangs up
    through the other. The process holding the link must close it too."""
    settings = loopback_settings(make_settings, database_url=postgres_url, redis_url=REDIS_URL,
                                 redis_prefix=redis_prefix, transcription_enabled=False)
    holder, other = await start_server(settings), await start_server(settings)
    client: SimulatedMember | None = None
    therapist: Sock | None = None
    try:
        users = Users(holder, http)
        t_user, c_user = await users.therapist(), await users.client()
        call_id = await open_call(holder, t_user, c_user, recording_consent=True)
        client = await SimulatedMember(holder.url, c_user.token, video=False).connect()
        await client.join(call_id)
        assert (await client.open_server_link())["ok"]
        meter = await wait_for(lambda: holder.services.media.consumers(call_id).get("client"), timeout=15)
        await wait_for(lambda: meter.frames > 5, timeout=15)
        [peer] = [p for (cid, _), p in holder.services.media.peers.items() if cid == call_id]

        therapist = await Sock(other.url, t_user.token, "therapist").connect()
        assert (await therapist.call("call.hangup", {"call_id": call_id}))["ok"]
        await wait_for(lambda: holder.services.media.consumers(call_id) == {}, timeout=10)
        assert meter.closed and peer.pc.connectionState == "closed", "the audio peer in the other process is closed"
        assert other.services.media.consumers(call_id) == {}
    finally:
        for closing in (client, therapist):
            if closing is not None:
                await closing.close()
        for running in (holder, other):
            await running.runner.cleanup()
