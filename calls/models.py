"""Tables of the calls domain."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime


class CallKind(str, enum.Enum):
    quick_connect = "quick_connect"
    scheduled = "scheduled"
    test = "test"


class CallStatus(str, enum.Enum):
    open = "open"
    ended = "ended"


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[CallKind] = mapped_column(Enum(CallKind, native_enum=False, length=16))
    status: Mapped[CallStatus] = mapped_column(Enum(CallStatus, native_enum=False, length=8), index=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    recording_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    terms_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When both members were first in the call together.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    recording_withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recording_withdrawn_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    transcript_complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    members: Mapped[list[CallMember]] = relationship(lazy="selectin", cascade="all, delete-orphan")

    def member(self, user_id: int) -> CallMember | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    def other_member(self, user_id: int) -> CallMember | None:
        return next((m for m in self.members if m.user_id != user_id), None)


class Consent(Base):
    """What a client agreed to, when, and under which version of the terms."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    terms_version: Mapped[str] = mapped_column(String(32))
    terms_accepted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recording_consent: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallMember(Base):
    """A member's presence in a call: the connection that holds their place, and since when they are away."""

    __tablename__ = "call_members"

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    away_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    joins: Mapped[int] = mapped_column(Integer, default=0)
    #: Since when this member's browser reports its peer connection to the other member as connected (None: not).
    media_connected_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: When that connection was last reported lost (or the member rejoined from another window with a new one).
    media_lost_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ChatMessage(Base):
    """An in-call chat message; the text is encrypted at rest. `id` orders messages within a call."""

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("call_id", "sender_id", "client_ref", name="uq_chat_messages_client_ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    sender_role: Mapped[str] = mapped_column(String(16))
    #: The sender's own id for the message, so a retried send is stored once.
    client_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    body_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallNote(Base):
    """The therapist's private notes for a call (one document, saved as they type); encrypted at rest."""

    __tablename__ = "call_notes"

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body_enc: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
