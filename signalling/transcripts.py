"""Composing recording and live transcription for the server: which consumer a member's audio goes to, where
results are stored and who receives them, and what happens when a call ends or consent is withdrawn."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from calls.models import Call
from core.logging import get_logger
from media.consumers import FrameConsumer
from media.pipeline import AudioSink, SpeakerPipeline
from media.recorder import OggOpusRecorder, RecorderSink, recording_aad
from transcription.decoder import Decoded
from transcription.jobs import UtteranceJob
from transcription.models import Recording
from transcription.store import store_segment
from transcription.stream import SpeakerStream

log = get_logger("transcription")


class TrackedRecorderSink(RecorderSink):
    """Marks the recording's row complete once the file is finalised."""

    def __init__(self, recorder: OggOpusRecorder, svc: Any, recording_id: int) -> None:
        super().__init__(recorder)
        self.svc, self.recording_id = svc, recording_id

    async def close(self) -> None:
        await super().close()
        async with self.svc.db.transaction() as session:
            await session.execute(update(Recording).where(Recording.id == self.recording_id).values(
                status="complete", finished_at=self.svc.clock.now()))


class CallMedia:
    """Per server process: the speaker streams of live calls, the consumer factory, the result sink."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.streams: dict[tuple[int, str], SpeakerStream] = {}
        self._therapists: dict[int, tuple[int, int]] = {}
        self._finishing: set[asyncio.Task[None]] = set()

    async def _members(self, call_id: int) -> tuple[int, int]:
        if call_id not in self._therapists:
            async with self.svc.db.session() as session:
                call = await session.get(Call, call_id)
            assert call is not None
            self._therapists[call_id] = (call.therapist_id, call.client_id)
        return self._therapists[call_id]

    async def consumer(self, call_id: int, user_id: int, role: str, offset_ms: int) -> FrameConsumer:
        """Record and transcribe this member (only ever called for calls with recording consent)."""
        svc = self.svc
        sinks: list[AudioSink] = []
        now = svc.clock.now()
        async with svc.db.transaction() as session:
            n = await session.scalar(select(func.count()).select_from(Recording).where(
                Recording.call_id == call_id, Recording.speaker_role == role)) or 0
            path = svc.settings.data_dir.resolve() / "recordings" / str(call_id) / f"{role}-{n}.ogg.enc"
            row = Recording(call_id=call_id, speaker_role=role, speaker_id=user_id, path=str(path),
                            start_offset_ms=offset_ms, status="recording", created_at=now,
                            delete_after=now + timedelta(days=svc.settings.recording_retention_days))
            session.add(row)
        recorder = await asyncio.get_running_loop().run_in_executor(
            None, OggOpusRecorder, path, svc.keyring, recording_aad(call_id, role))
        sinks.append(TrackedRecorderSink(recorder, svc, row.id))
        if svc.settings.transcription_enabled:
            stream = SpeakerStream(svc.transcriber, call_id=call_id, speaker_role=role, speaker_id=user_id,
                                   offset_ms=offset_ms)
            self.streams[(call_id, role)] = stream
            sinks.append(stream)
        return SpeakerPipeline(sinks, queue_frames=svc.settings.media_queue_frames, label=f"{call_id}:{role}")

    async def deliver(self, job: UtteranceJob, decoded: Decoded) -> None:
        """Store a result (once) and send it to the therapist's screen (and the client's, if settings allow)."""
        segment = await store_segment(self.svc.db, self.svc.keyring, self.svc.clock, job, decoded)
        if segment is None:
            return
        stream = self.streams.get((job.call_id, job.speaker_role))
        if stream is not None:
            stream.commit(decoded.text)
        therapist_id, client_id = await self._members(job.call_id)
        await self.svc.sio.emit("call.transcript", {"segment": segment}, to=f"user:{therapist_id}")
        if self.svc.settings.transcripts_to_client:
            await self.svc.sio.emit("call.transcript", {"segment": segment}, to=f"user:{client_id}")

    async def stop_call(self, call_id: int) -> list[FrameConsumer]:
        """Close the call's audio links in this process (consent withdrawn, or the call ended)."""
        consumers = await self.svc.media.close_call(call_id)
        for key in [k for k in self.streams if k[0] == call_id]:
            self.streams.pop(key, None)
        return consumers

    def finish_call(self, call_id: int) -> None:
        """After the call ended: flush what is still queued, then mark the transcript complete (in the background)."""
        task = asyncio.get_running_loop().create_task(self._finish(call_id))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, call_id: int) -> None:
        try:
            for consumer in await self.stop_call(call_id):
                if isinstance(consumer, SpeakerPipeline):
                    await asyncio.wait_for(consumer.finished, 60)
            await self.svc.transcriber.drain(call_id)
            async with self.svc.db.transaction() as session:
                await session.execute(update(Call).where(Call.id == call_id).values(transcript_complete=True))
            therapist_id, _ = await self._members(call_id)
            await self.svc.sio.emit("call.transcript_complete", {"call_id": call_id}, to=f"user:{therapist_id}")
            self._therapists.pop(call_id, None)
            log.info("transcription.call_complete", call_id=call_id)
        except Exception:  # noqa: BLE001
            log.exception("transcription.finish_failed", call_id=call_id)

    async def wait_idle(self) -> None:
        """Wait for every call being finished (tests, shutdown)."""
        while self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)


RECOVER_AFTER = timedelta(minutes=2)


async def recover_interrupted(svc: Any) -> int:
    """Finish the transcripts of calls whose server process stopped mid-call: the recordings it left behind (never
    finalised, readable up to their last chunk) are cut and transcribed again, skipping what was already stored.
    Only recordings of calls that ended a while ago are touched, so a live process's recordings are left alone."""
    from calls.models import CallStatus
    from media.recorder import read_recording
    from transcription.models import TranscriptSegment
    from transcription.segmenter import Segmenter

    cutoff = svc.clock.now() - RECOVER_AFTER
    async with svc.db.session() as session:
        rows = (await session.execute(
            select(Recording, Call).join(Call, Call.id == Recording.call_id).where(
                Recording.status == "recording", Call.status == CallStatus.ended, Call.ended_at <= cutoff)
        )).all()
    recovered = 0
    loop = asyncio.get_running_loop()
    for rec, call in rows:
        audio, _ = await loop.run_in_executor(None, read_recording, Path(rec.path), svc.keyring,
                                              recording_aad(rec.call_id, rec.speaker_role))
        async with svc.db.session() as session:
            done = (await session.execute(select(TranscriptSegment.start_ms, TranscriptSegment.end_ms).where(
                TranscriptSegment.call_id == rec.call_id, TranscriptSegment.speaker_role == rec.speaker_role))).all()
        segmenter = Segmenter()
        utterances = await loop.run_in_executor(None, segmenter.feed, audio)
        utterances += segmenter.flush()
        for n, utt in enumerate(utterances):
            if n and n % 20 == 0:
                await svc.transcriber.drain(rec.call_id)  # a long recording goes in slices, never past the queue's bound
            start = rec.start_offset_ms + utt.start * 1000 // 16000
            end = rec.start_offset_ms + utt.end * 1000 // 16000
            if any(s < end and start < e for s, e in done):
                continue
            await svc.transcriber.submit(UtteranceJob(
                call_id=rec.call_id, speaker_role=rec.speaker_role, speaker_id=rec.speaker_id, index=utt.index,
                start_ms=start, end_ms=end, audio=utt.audio))
        await svc.transcriber.drain(rec.call_id)
        async with svc.db.transaction() as session:
            await session.execute(update(Recording).where(Recording.id == rec.id).values(
                status="interrupted", finished_at=svc.clock.now()))
            await session.execute(update(Call).where(Call.id == rec.call_id).values(transcript_complete=True))
        recovered += 1
        log.info("transcription.recovered", call_id=rec.call_id, role=rec.speaker_role, utterances=len(utterances))
    return recovered


async def delete_expired_recordings(svc: Any) -> int:
    """Retention: recordings past their `delete_after` are deleted from disk (the transcript is kept)."""
    now = svc.clock.now()
    async with svc.db.transaction() as session:
        rows = (await session.scalars(select(Recording).where(
            Recording.status.in_(("complete", "interrupted")), Recording.delete_after <= now))).all()
        for rec in rows:
            Path(rec.path).unlink(missing_ok=True)
            rec.status = "deleted"
    return len(rows)
