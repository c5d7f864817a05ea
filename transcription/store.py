"""Storing transcript segments (encrypted, once per utterance) and reading a call's transcript back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.clock import Clock
from core.crypto import Keyring
from core.db import Database
from transcription.decoder import Decoded
from transcription.jobs import UtteranceJob
from transcription.models import TranscriptAccess, TranscriptSegment


def _aad(call_id: int) -> str:
    return f"transcript:{call_id}"


def as_dict(seg: TranscriptSegment, keyring: Keyring) -> dict[str, Any]:
    return {
        "id": seg.id,
        "call_id": seg.call_id,
        "speaker": seg.speaker_role,
        "start_ms": seg.start_ms,
        "end_ms": seg.end_ms,
        "text": keyring.decrypt_text(seg.text_enc, _aad(seg.call_id)),
        "confidence": seg.confidence,
        "final": True,
    }


async def store_segment(db: Database, keyring: Keyring, clock: Clock, job: UtteranceJob, decoded: Decoded) -> dict[str, Any] | None:
    """The stored segment, or None when there is no text or this utterance was already stored."""
    if not decoded.kept:
        return None
    seg = TranscriptSegment(
        call_id=job.call_id, utterance_key=job.key, speaker_role=job.speaker_role, speaker_id=job.speaker_id,
        start_ms=job.start_ms, end_ms=job.end_ms, text_enc=keyring.encrypt_text(decoded.text, _aad(job.call_id)),
        confidence=decoded.confidence, created_at=clock.now(),
    )
    try:
        async with db.transaction() as session:
            session.add(seg)
    except IntegrityError:
        return None
    return as_dict(seg, keyring)


async def transcript(db: Database, keyring: Keyring, call_id: int) -> list[dict[str, Any]]:
    """Both speakers' segments interleaved by time."""
    async with db.session() as session:
        rows = (await session.scalars(
            select(TranscriptSegment).where(TranscriptSegment.call_id == call_id)
            .order_by(TranscriptSegment.start_ms, TranscriptSegment.id)
        )).all()
    return [as_dict(r, keyring) for r in rows]


async def log_access(db: Database, clock: Clock, *, user_id: int, call_id: int | None, action: str) -> None:
    async with db.transaction() as session:
        session.add(TranscriptAccess(call_id=call_id, user_id=user_id, action=action, at=clock.now()))
