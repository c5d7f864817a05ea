"""Live transcription end to end: real speech sent over WebRTC (aiortc) to the server's audio peer, cut by VAD,
transcribed by the real model, stored encrypted, pushed to the therapist only; recording, consent and the call log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import numpy as np
import pytest
from sqlalchemy import select, text

from benchmarks._peers import PcmTrack, SimulatedMember, load_wav_48k
from conftest import RunningServer, Sock, Users, open_call, wait_for
from media.addresses import use_host_addresses
from media.recorder import read_recording, recording_aad
from speech import clip, manifest, noise, wer
from transcription.models import Recording, TranscriptAccess

CLIENT_CLIP = "ls-test-clean_61-70968-0000.wav"      # 4.9 s
THERAPIST_CLIP = "librivox_sense-and-sensibility-ch01_0930.wav"  # 3.3 s


@pytest.fixture(autouse=True)
def loopback_ice() -> AsyncIterator[None]:
    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses([])


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(48000 * seconds), dtype=np.int16)


def noise_48k(seconds: float) -> np.ndarray:
    return (noise(seconds, rate=48000) * 32767).astype(np.int16)


async def call_with_members(server: RunningServer, users: Users, sockets, *, recording: bool = True):
    t_user, c_user = await users.therapist(), await users.client()
    call_id = await open_call(server, t_user, c_user, recording_consent=recording)
    therapist_sock: Sock = await sockets(server, t_user, "therapist-screen")
    client_sock: Sock = await sockets(server, c_user, "client-screen")
    therapist = await SimulatedMember(server.url, t_user.token, video=False).connect()
    client = await SimulatedMember(server.url, c_user.token, video=False).connect()
    await therapist.join(call_id)
    await client.join(call_id)
    return call_id, (t_user, therapist, therapist_sock), (c_user, client, client_sock)


async def test_client_speech_reaches_the_therapist_as_text_under_the_clients_name(
    server: RunningServer, users: Users, sockets, http: aiohttp.ClientSession, captured_logs
) -> None:
    call_id, (t_user, therapist, t_sock), (c_user, client, c_sock) = await call_with_members(server, users, sockets)
    try:
        await therapist.open_server_link(PcmTrack(np.concatenate([silence(2), noise_48k(5)])))
        await client.open_server_link(PcmTrack(load_wav_48k(str(clip(CLIENT_CLIP)), pad_s=1.5)))
        segment = (await t_sock.next("call.transcript", timeout=30))["segment"]
        assert segment["speaker"] == "client" and segment["final"] is True
        assert wer(manifest()[CLIENT_CLIP], segment["text"]) < 0.35, segment["text"]
        await asyncio.sleep(1.5)
        assert all(s["segment"]["speaker"] == "client" for s in t_sock.received("call.transcript")), \
            "the therapist's silence and noise make no text"
        assert c_sock.received("call.transcript") == [], "the client does not receive the transcript"

        assert (await t_sock.call("call.hangup", {"call_id": call_id}))["ok"]
        await t_sock.next("call.transcript_complete", timeout=30)
        async with http.get(f"{server.url}/api/calls/{call_id}", headers=t_user.headers) as resp:
            detail = await resp.json()
        assert detail["transcript_complete"] is True and detail["transcript"][0]["text"] == segment["text"]
        async with http.get(f"{server.url}/api/calls/{call_id}", headers=c_user.headers) as resp:
            assert "transcript" not in await resp.json()
        async with http.get(f"{server.url}/api/calls/{call_id}/transcript?format=json", headers=c_user.headers) as resp:
            assert resp.status == 403
        for fmt, marker in (("txt", "Client:"), ("vtt", "WEBVTT"), ("json", '"speaker": "client"')):
            async with http.get(f"{server.url}/api/calls/{call_id}/transcript?format={fmt}", headers=t_user.headers) as resp:
                assert resp.status == 200 and marker in await resp.text()
        word = segment["text"].split()[1].strip(".,").lower()
        async with http.get(f"{server.url}/api/transcripts/search", params={"q": word}, headers=t_user.headers) as resp:
            assert [r["call_id"] for r in (await resp.json())["results"]] == [call_id]

        async with server.services.db.session() as session:
            stored = (await session.execute(text("SELECT text_enc FROM transcript_segments"))).scalars().all()
            access = (await session.scalars(select(TranscriptAccess))).all()
        assert stored and all(segment["text"] not in s for s in stored), "encrypted at rest"
        assert {"read", "download.txt", "download.vtt", "download.json", "search"} <= {a.action for a in access}
        assert [a.call_id for a in access if a.action == "search"] == [call_id], "the search logs the call it read"
        assert segment["text"] not in captured_logs.getvalue(), "transcript text never reaches the logs"
    finally:
        await therapist.close()
        await client.close()


async def test_each_speaker_is_attributed_and_recorded_separately(
    server: RunningServer, users: Users, sockets, http: aiohttp.ClientSession
) -> None:
    call_id, (t_user, therapist, t_sock), (c_user, client, _) = await call_with_members(server, users, sockets)
    try:
        await therapist.open_server_link(PcmTrack(np.concatenate([silence(0.5), load_wav_48k(str(clip(THERAPIST_CLIP)), pad_s=1.5)])))
        await client.open_server_link(PcmTrack(np.concatenate([silence(0.5), load_wav_48k(str(clip(CLIENT_CLIP)), pad_s=1.5)])))
        await t_sock.next("call.transcript", lambda d: d["segment"]["speaker"] == "therapist", timeout=30)
        await t_sock.next("call.transcript", lambda d: d["segment"]["speaker"] == "client", timeout=30)
        refs = manifest()
        by_role = {role: " ".join(d["segment"]["text"] for d in t_sock.received("call.transcript")
                                  if d["segment"]["speaker"] == role) for role in ("therapist", "client")}
        assert wer(refs[THERAPIST_CLIP], by_role["therapist"]) < 0.35, by_role
        assert wer(refs[CLIENT_CLIP], by_role["client"]) < 0.35, by_role
        await t_sock.call("call.hangup", {"call_id": call_id})
        await t_sock.next("call.transcript_complete", timeout=30)

        async with server.services.db.session() as session:
            recordings = (await session.scalars(select(Recording).where(Recording.call_id == call_id))).all()
        assert {r.speaker_role for r in recordings} == {"therapist", "client"}
        for rec in recordings:
            assert rec.status == "complete"
            raw = Path(rec.path).read_bytes()
            assert b"OggS" not in raw, "the recording is encrypted at rest"
            audio, complete = read_recording(Path(rec.path), server.services.keyring, recording_aad(call_id, rec.speaker_role))
            assert complete and len(audio) / 16000 > 3.0

        base = f"{server.url}/api/calls/{call_id}/recordings"
        async with http.get(base, headers=t_user.headers) as resp:
            listed = (await resp.json())["recordings"]
        assert sorted(r["speaker"] for r in listed) == ["client", "therapist"]
        client_rec = next(r for r in listed if r["speaker"] == "client")
        async with http.get(f"{base}/{client_rec['id']}", headers=t_user.headers) as resp:
            assert resp.status == 200 and resp.content_type == "audio/ogg"
            assert (await resp.read()).startswith(b"OggS"), "decrypted for the therapist"
        for path in (base, f"{base}/{client_rec['id']}"):
            async with http.get(path, headers=c_user.headers) as resp:
                assert resp.status == 403, "recordings are for the therapist"
        async with server.services.db.session() as session:
            downloads = (await session.scalars(select(TranscriptAccess).where(
                TranscriptAccess.action == "recording.download"))).all()
        assert [(a.call_id, a.user_id) for a in downloads] == [(call_id, t_user.id)], "the download is in the access log"
    finally:
        await therapist.close()
        await client.close()


async def test_without_consent_nothing_is_recorded_or_transcribed(server: RunningServer, users: Users, sockets) -> None:
    call_id, (_, therapist, t_sock), (_, client, _) = await call_with_members(server, users, sockets, recording=False)
    try:
        assert (await client.open_server_link(PcmTrack(load_wav_48k(str(clip(CLIENT_CLIP))))))["error"]["code"] == "no_consent"
        assert (await therapist.open_server_link(PcmTrack(silence(1))))["error"]["code"] == "no_consent"
        assert server.services.media.consumers(call_id) == {}
        async with server.services.db.session() as session:
            assert (await session.scalars(select(Recording).where(Recording.call_id == call_id))).all() == []
        assert not (server.services.settings.data_dir / "recordings" / str(call_id)).exists()
    finally:
        await therapist.close()
        await client.close()


async def test_withdrawing_consent_mid_call_stops_recording_and_transcription(server: RunningServer, users: Users, sockets) -> None:
    call_id, (_, therapist, t_sock), (c_user, client, c_sock) = await call_with_members(server, users, sockets)
    svc = server.services
    try:
        long_speech = np.concatenate([load_wav_48k(str(clip(CLIENT_CLIP)), pad_s=0.3)] * 3)
        await client.open_server_link(PcmTrack(long_speech))
        await therapist.open_server_link(PcmTrack(np.concatenate([silence(0.5), long_speech])))
        consumers = svc.media.consumers(call_id)
        await wait_for(lambda: all(consumers.get(r) is not None and consumers[r].frames > 50
                                   for r in ("client", "therapist")), timeout=15)
        assert (await c_sock.call("call.recording.withdraw", {"call_id": call_id}))["ok"]
        for sock in (t_sock, c_sock):
            assert (await sock.next("call.recording"))["active"] is False
        assert svc.media.consumers(call_id) == {}, "the server's audio links are closed"
        for role in ("client", "therapist"):
            await asyncio.wait_for(consumers[role].finished, 10)
        await svc.transcriber.drain(call_id, 20)  # what was said before the withdrawal may still be transcribed
        await asyncio.sleep(0.2)
        async with svc.db.session() as session:
            recordings = (await session.scalars(select(Recording).where(Recording.call_id == call_id))).all()
        assert sorted(r.speaker_role for r in recordings) == ["client", "therapist"]
        sizes = {r.path: Path(r.path).stat().st_size for r in recordings}
        frames = {role: consumers[role].frames for role in ("client", "therapist")}
        segments = len(t_sock.received("call.transcript"))
        again = await client.open_server_link(PcmTrack(silence(1)))
        assert again["error"]["code"] == "no_consent"
        await asyncio.sleep(3)  # both members' microphones keep sending meanwhile
        assert {role: consumers[role].frames for role in frames} == frames, "no more audio is received"
        assert {p: Path(p).stat().st_size for p in sizes} == sizes, "neither recording grows"
        async with svc.db.session() as session:
            assert len((await session.scalars(select(Recording).where(Recording.call_id == call_id))).all()) == 2
        assert len(t_sock.received("call.transcript")) == segments, "nothing more is transcribed"
    finally:
        await therapist.close()
        await client.close()
