"""Composing recording and live transcription for the server: which consumer a member's audio goes to, where
results are stored and who receives them, and what happens when a call ends, consent is withdrawn or the process
stops.

A recording is marked `complete` only once its file is final and every utterance of its call submitted so far has
a stored result; until then it stays `recording`, and the recovery sweep (`recover_interrupted`) transcribes it
again from the file, skipping what was stored, once its call has ended and nothing of it is still queued."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update

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
#: How long the end of a call (or of a member's audio link) waits for its utterances to be stored.
DRAIN_S = 60.0


class CallMedia:
    """Per server process: the speaker streams of live calls, the consumer factory, the result sink."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.streams: dict[tuple[int, str], SpeakerStream] = {}
        self._therapists: dict[int, tuple[int, int]] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        #: per call: the tasks that mark its recordings complete once their audio and utterances are through
        self._settling: dict[int, set[asyncio.Task[None]]] = {}

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
        sinks.append(RecorderSink(recorder))
        transcribed = svc.settings.transcription_enabled
        if transcribed:
            stream = SpeakerStream(svc.transcriber, call_id=call_id, speaker_role=role, speaker_id=user_id,
                                   offset_ms=offset_ms)
            self.streams[(call_id, role)] = stream
            sinks.append(stream)
        pipeline = SpeakerPipeline(sinks, queue_frames=svc.settings.media_queue_frames, label=f"{call_id}:{role}")
        task = asyncio.get_running_loop().create_task(self._settle(pipeline, call_id, row.id, transcribed))
        tasks = self._settling.setdefault(call_id, set())
        tasks.add(task)
        task.add_done_callback(lambda t: self._forget_settling(call_id, t))
        return pipeline

    def _forget_settling(self, call_id: int, task: asyncio.Task[None]) -> None:
        tasks = self._settling.get(call_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._settling[call_id]

    async def _settle(self, pipeline: SpeakerPipeline, call_id: int, recording_id: int, transcribed: bool) -> None:
        """Once the pipeline has closed (its file final, its last utterance submitted) and the call's utterances are
        stored, mark the recording complete; if they are not stored in time, leave it to the recovery sweep."""
        await pipeline.finished
        try:
            if transcribed:
                await self.svc.transcriber.drain(call_id, DRAIN_S)
            async with self.svc.db.transaction() as session:
                await session.execute(update(Recording).where(Recording.id == recording_id).values(
                    status="complete", finished_at=self.svc.clock.now()))
        except Exception as exc:  # noqa: BLE001 - the recording stays `recording`: the recovery sweep finishes it
            log.warning("transcription.recording_unsettled", call_id=call_id, recording_id=recording_id,
                        error=type(exc).__name__)

    def busy(self, call_id: int) -> bool:
        """Whether this process still has audio of the call coming in or being settled."""
        return bool(self._settling.get(call_id))

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
        """A backlog that outlasts DRAIN_S leaves the transcript incomplete: the recovery sweep completes it later."""
        try:
            for consumer in await self.stop_call(call_id):
                if isinstance(consumer, SpeakerPipeline):
                    await asyncio.wait_for(consumer.finished, DRAIN_S)
            await asyncio.gather(*self._settling.get(call_id, ()))
            await self.svc.transcriber.drain(call_id, DRAIN_S)
            await complete_transcript(self.svc, call_id)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("transcription.finish_deferred", call_id=call_id, after_s=DRAIN_S)  # the recovery sweep ends it
        except Exception:  # noqa: BLE001
            log.exception("transcription.finish_failed", call_id=call_id)
        finally:
            self._therapists.pop(call_id, None)

    async def shutdown(self, timeout: float) -> None:
        """The process is stopping and its audio links are closed: let the last utterances be cut, decoded and
        stored, for at most `timeout` seconds. What is not through by then stays unfinished (its recordings
        `recording`, its transcript incomplete), and the recovery sweep of the next process completes it."""
        tasks = [*self._finishing, *(t for ts in self._settling.values() for t in ts)]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.warning("transcription.shutdown_unfinished", tasks=len(late), timeout_s=timeout)


async def complete_transcript(svc: Any, call_id: int) -> None:
    """Mark the call's transcript complete and tell its therapist, unless one of its recordings is still open: every
    process ends a call's media, and the one holding a member's audio link completes the transcript once that
    recording is settled (a process that died with it open leaves it to the recovery sweep)."""
    async with svc.db.transaction() as session:
        call = await session.get(Call, call_id)
        if call is None:
            return
        if await session.scalar(select(Recording.id).where(
                Recording.call_id == call_id, Recording.status == "recording").limit(1)) is not None:
            log.info("transcription.call_awaits_recordings", call_id=call_id)
            return
        therapist_id = call.therapist_id
        marked = await session.execute(update(Call).where(Call.id == call_id, Call.transcript_complete == False)  # noqa: E712
                                       .values(transcript_complete=True).execution_options(synchronize_session=False))
        if marked.rowcount != 1:
            return  # another process (every one ends the call's media) completed it: the therapist is told once
    await svc.sio.emit("call.transcript_complete", {"call_id": call_id}, to=f"user:{therapist_id}")
    log.info("transcription.call_complete", call_id=call_id)


RECOVER_AFTER = timedelta(minutes=2)


async def recover_interrupted(svc: Any) -> int:
    """Finish the transcripts of calls that ended a while ago and are not complete: the end of the call timed out
    waiting for a backlog, or the server process stopped mid-call or before its utterances were stored. Calls with
    utterances still queued (in any process, in Redis mode) or audio still settling here are left for a later sweep.
    Recordings never marked complete (readable up to their last chunk if never finalised) are cut and transcribed
    again, skipping what was already stored. Returns the number of calls completed."""
    from calls.models import CallStatus

    cutoff = svc.clock.now() - RECOVER_AFTER
    async with svc.db.session() as session:
        unfinished = select(Recording.call_id).where(Recording.status == "recording")
        not_complete = Call.transcript_complete == False  # noqa: E712
        call_ids = (await session.scalars(select(Call.id).where(
            Call.status == CallStatus.ended, Call.ended_at <= cutoff, or_(not_complete, Call.id.in_(unfinished)),
        ).order_by(Call.id))).all()
    recovered = 0
    for call_id in call_ids:
        if svc.call_media.busy(call_id) or await svc.transcriber.pending(call_id) > 0:
            continue  # still being transcribed: its results are on their way
        async with svc.db.session() as session:
            recordings = (await session.scalars(select(Recording).where(
                Recording.call_id == call_id, Recording.status == "recording").order_by(Recording.id))).all()
        try:
            for rec in recordings:
                await _transcribe_again(svc, rec)
        except Exception:  # noqa: BLE001 - one unreadable call must not hold up the others; the next sweep retries it
            log.exception("transcription.recover_failed", call_id=call_id)
            continue
        await complete_transcript(svc, call_id)
        recovered += 1
    return recovered


async def _transcribe_again(svc: Any, rec: Recording) -> None:
    from media.recorder import read_recording
    from transcription.models import TranscriptSegment
    from transcription.segmenter import Segmenter

    loop = asyncio.get_running_loop()
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
    log.info("transcription.recovered", call_id=rec.call_id, role=rec.speaker_role, utterances=len(utterances))


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
