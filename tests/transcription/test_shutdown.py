"""A graceful stop loses no utterance: what is still queued (or still being spoken) when the server stops is cut,
decoded and stored before it exits; what cannot be stored in time is finished from the recording after a restart."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any, Callable

import aiohttp
from sqlalchemy import select, update

from calls.models import Call, CallStatus
from conftest import RunningServer, Users, open_call, start_server, wait_for
from core.clock import FrozenClock
from fakes import GatedDecoder, attach_member, feed, speech_48k
from signalling.transcripts import recover_interrupted
from transcription.models import Recording
from transcription.store import transcript

FIRST = "ls-test-clean_61-70968-0000.wav"                 # 4.9 s, then a pause that ends the utterance
SECOND = "librivox_sense-and-sensibility-ch01_0930.wav"   # 3.3 s, still being spoken when the server stops


async def speaking_when_stopped(running: RunningServer, gate: threading.Event) -> tuple[int, GatedDecoder]:
    """A call whose client said one thing (its utterance held in the transcriber by `gate`) and is saying a second
    one (still open in the segmenter) when the server is told to stop."""
    svc = running.services
    decoder = GatedDecoder(gate)
    svc.transcriber.decoder_factory = lambda: decoder
    async with aiohttp.ClientSession() as http:
        users = Users(running, http)
        therapist, client = await users.therapist(), await users.client()
    call_id = await open_call(running, therapist, client)
    pipeline = await attach_member(svc, call_id, client.id, "client")
    await feed(pipeline, speech_48k(FIRST, silence_after_s=1.0))
    await wait_for(lambda: decoder.started == 1, timeout=10)  # the first utterance is in the transcriber
    await feed(pipeline, speech_48k(SECOND))
    return call_id, decoder


async def recordings(svc: Any, call_id: int) -> list[Recording]:
    async with svc.db.session() as session:
        return list((await session.scalars(select(Recording).where(Recording.call_id == call_id))).all())


async def test_stopping_the_server_stores_what_is_still_queued_and_what_is_being_said(
    make_settings: Callable[..., Any], clock: FrozenClock
) -> None:
    settings = make_settings()
    running = await start_server(settings, clock=clock)
    gate = threading.Event()
    try:
        call_id, decoder = await speaking_when_stopped(running, gate)
        assert await transcript(running.services.db, running.services.keyring, call_id) == []
        stopping = asyncio.create_task(running.runner.cleanup())
        await wait_for(lambda: running.services.stopping, timeout=5)
        gate.set()  # the model catches up while the server stops
        await asyncio.wait_for(stopping, 30)
    finally:
        gate.set()
    assert decoder.decoded == 2, "the utterance being said when the server stopped was cut and decoded too"

    again = await start_server(settings, clock=clock)
    try:
        segments = await transcript(again.services.db, again.services.keyring, call_id)
        assert len(segments) == 2 and len({s["start_ms"] for s in segments}) == 2, segments
        assert [r.status for r in await recordings(again.services, call_id)] == ["complete"]
        clock.advance(3600)
        async with again.services.db.transaction() as session:
            await session.execute(update(Call).where(Call.id == call_id).values(
                status=CallStatus.ended, ended_at=clock.now() - timedelta(minutes=10)))
        await recover_interrupted(again.services)
        assert len(await transcript(again.services.db, again.services.keyring, call_id)) == 2, "stored once"
    finally:
        await again.runner.cleanup()


async def test_what_cannot_be_stored_before_the_deadline_is_finished_from_the_recording_after_a_restart(
    make_settings: Callable[..., Any], clock: FrozenClock
) -> None:
    settings = make_settings(transcription_shutdown_s=0.3)
    running = await start_server(settings, clock=clock)
    gate = threading.Event()
    try:
        call_id, _ = await speaking_when_stopped(running, gate)
        await asyncio.wait_for(running.runner.cleanup(), 30)  # the model never catches up in time
    finally:
        gate.set()

    again = await start_server(settings, clock=clock)
    try:
        svc = again.services
        assert [r.status for r in await recordings(svc, call_id)] == ["recording"], \
            "not marked complete: its utterances were not all stored"
        assert await transcript(svc.db, svc.keyring, call_id) == []
        svc.transcriber.decoder_factory = lambda: GatedDecoder(gate)
        async with svc.db.transaction() as session:  # the sweeper ends the call once its members stay away
            await session.execute(update(Call).where(Call.id == call_id).values(
                status=CallStatus.ended, ended_at=clock.now()))
        clock.advance(300)
        assert await recover_interrupted(svc) == 1
        segments = await transcript(svc.db, svc.keyring, call_id)
        assert len(segments) == 2 and len({s["start_ms"] for s in segments}) == 2, segments
        assert [r.status for r in await recordings(svc, call_id)] == ["interrupted"]
        assert await recover_interrupted(svc) == 0
        assert len(await transcript(svc.db, svc.keyring, call_id)) == 2, "each utterance once"
    finally:
        await again.runner.cleanup()
