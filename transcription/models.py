"""Tables of transcription: segments of the transcript, recordings, and the access log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class TranscriptSegment(Base):
    """One utterance of one speaker, in call time; the text is encrypted at rest. Keyed by utterance, so a result
    delivered twice (a worker retried) is stored once."""

    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("call_id", "utterance_key", name="uq_transcript_segments_utterance"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    utterance_key: Mapped[str] = mapped_column(String(64))
    speaker_role: Mapped[str] = mapped_column(String(16))
    speaker_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    start_ms: Mapped[int] = mapped_column(Integer)
    end_ms: Mapped[int] = mapped_column(Integer)
    text_enc: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Recording(Base):
    """One speaker's audio for one stretch of a call (a new file after a reconnect), encrypted at rest."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    speaker_role: Mapped[str] = mapped_column(String(16))
    speaker_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    path: Mapped[str] = mapped_column(String(500))
    start_offset_ms: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # recording, complete, deleted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delete_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TranscriptAccess(Base):
    """Who read or downloaded a transcript or a recording, and when."""

    __tablename__ = "transcript_access"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"), nullable=True, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))  # read, download.txt, download.vtt, download.json, search
    at: Mapped[datetime] = mapped_column(UTCDateTime)
