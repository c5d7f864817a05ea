"""After a server stops mid-call, its unfinished recordings complete the transcript; old recordings are deleted."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import select, update

from calls.models import Call, CallStatus
from conftest import RunningServer, Users, open_call
from core.clock import FrozenClock
from fakes import GatedDecoder
from media.recorder import OggOpusRecorder, recording_aad
from signalling.transcripts import delete_expired_recordings, recover_interrupted
from speech import manifest, pcm16k, wer
from transcription.jobs import UtteranceJob
from transcription.models import Recording
from transcription.store import transcript

CLIP = "librivox_sense-and-sensibility-ch01_0930.wav"


async def crashed_recording(server: RunningServer, users: Users) -> tuple[int, Recording]:
    svc = server.services
    t_user, c_user = await users.therapist(), await users.client()
    call_id = await open_call(server, t_user, c_user)
    path = svc.settings.data_dir / "recordings" / str(call_id) / "client-0.ogg.enc"
    recorder = OggOpusRecorder(path, svc.keyring, recording_aad(call_id, "client"))
    pcm = (np.concatenate([pcm16k(CLIP), np.zeros(16000 * 2, dtype=np.float32)]) * 32767).astype(np.int16)
    for i in range(0, len(pcm), 320):
        recorder.write(pcm[i:i + 320])
    recorder._writer.flush_chunk()  # what a process would have written before it died: no final chunk, no close
    recorder._raw.flush()
    now = svc.clock.now()
    async with svc.db.transaction() as session:
        rec = Recording(call_id=call_id, speaker_role="client", speaker_id=c_user.id, path=str(path), start_offset_ms=1000,
                        status="recording", created_at=now, delete_after=now + timedelta(days=30))
        session.add(rec)
        await session.execute(update(Call).where(Call.id == call_id).values(status=CallStatus.ended, ended_at=now))
    return call_id, rec


async def test_the_transcript_is_completed_from_an_interrupted_recording(server: RunningServer, users: Users, clock: FrozenClock) -> None:
    call_id, _ = await crashed_recording(server, users)
    assert await recover_interrupted(server.services) == 0, "too soon: its process may still be finishing it"
    clock.advance(300)
    assert await recover_interrupted(server.services) == 1
    segments = await transcript(server.services.db, server.services.keyring, call_id)
    assert segments and all(s["speaker"] == "client" and s["start_ms"] >= 1000 for s in segments)
    assert wer(manifest()[CLIP], " ".join(s["text"] for s in segments)) < 0.3
    async with server.services.db.session() as session:
        call = await session.get(Call, call_id)
        rec = await session.scalar(select(Recording).where(Recording.call_id == call_id))
    assert call is not None and call.transcript_complete and rec is not None and rec.status == "interrupted"
    assert await recover_interrupted(server.services) == 0, "done once"


async def test_recordings_are_deleted_after_the_retention_period(server: RunningServer, users: Users, clock: FrozenClock) -> None:
    call_id, rec = await crashed_recording(server, users)
    clock.advance(300)
    await recover_interrupted(server.services)
    assert await delete_expired_recordings(server.services) == 0
    clock.advance(server.services.settings.recording_retention_days * 86400)
    assert await delete_expired_recordings(server.services) == 1
    async with server.services.db.session() as session:
        row = await session.scalar(select(Recording).where(Recording.call_id == call_id))
    assert row is not None and row.status == "deleted"
    from pathlib import Path

    assert not Path(row.path).exists()
    assert await transcript(server.services.db, server.services.keyring, call_id), "the transcript is kept"


async def test_a_call_whose_backlog_outlasted_its_end_is_completed_by_the_sweep_once_its_utterances_are_stored(
    server: RunningServer, users: Users, clock: FrozenClock, sockets: Any
) -> None:
    svc = server.services
    gate = threading.Event()
    svc.transcriber.decoder_factory = lambda: GatedDecoder(gate)
    t_user, c_user = await users.therapist(), await users.client()
    call_id = await open_call(server, t_user, c_user)
    screen = await sockets(server, t_user, "therapist-screen")
    try:
        await svc.transcriber.submit(UtteranceJob(call_id=call_id, speaker_role="client", speaker_id=c_user.id, index=0,
                                                  start_ms=1000, end_ms=3000, audio=np.zeros(32000, dtype=np.float32)))
        async with svc.db.transaction() as session:  # ended; the end of the call gave up waiting for the backlog
            await session.execute(update(Call).where(Call.id == call_id).values(status=CallStatus.ended, ended_at=clock.now()))
        clock.advance(300)
        assert await recover_interrupted(svc) == 0, "its utterance is still queued: not complete yet"
        gate.set()
        await svc.transcriber.drain(call_id, 10)
        assert screen.received("call.transcript_complete") == []
        assert await recover_interrupted(svc) == 1
        assert (await screen.next("call.transcript_complete"))["call_id"] == call_id
        async with svc.db.session() as session:
            call = await session.get(Call, call_id)
        assert call is not None and call.transcript_complete
        assert len(await transcript(svc.db, svc.keyring, call_id)) == 1
        assert await recover_interrupted(svc) == 0, "done once"
    finally:
        gate.set()
        await screen.close()


async def test_a_process_without_the_audio_links_does_not_complete_the_transcript_early(
    server: RunningServer, users: Users, clock: FrozenClock
) -> None:
    """Every process ends a call's media; one that held no audio link of it must not mark the transcript complete
    while another process's recording of that call is still being settled."""
    call_id, rec = await crashed_recording(server, users)
    await server.services.call_media._finish(call_id)  # this process has no link of the call
    async with server.services.db.session() as session:
        assert not (await session.get(Call, call_id)).transcript_complete, "a recording of it is still open"
    async with server.services.db.transaction() as session:
        await session.execute(update(Recording).where(Recording.id == rec.id).values(status="complete"))
    await server.services.call_media._finish(call_id)
    async with server.services.db.session() as session:
        assert (await session.get(Call, call_id)).transcript_complete


async def test_the_therapist_is_told_once_that_the_transcript_is_complete(
    server: RunningServer, users: Users, monkeypatch: Any
) -> None:
    """Every process finishes a call's media; only the first to mark the transcript complete tells the therapist."""
    from signalling.transcripts import complete_transcript

    call_id, rec = await crashed_recording(server, users)
    async with server.services.db.transaction() as session:
        await session.execute(update(Recording).where(Recording.id == rec.id).values(status="complete"))
    told: list[Any] = []
    real_emit = server.services.sio.emit

    async def counting_emit(event: str, *args: Any, **kwargs: Any) -> None:
        told.append(event)
        await real_emit(event, *args, **kwargs)

    monkeypatch.setattr(server.services.sio, "emit", counting_emit)
    for _ in range(3):
        await complete_transcript(server.services, call_id)
    assert told.count("call.transcript_complete") == 1
