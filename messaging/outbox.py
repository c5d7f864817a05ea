"""The outbox table: every e-mail and text message is written here first, in the caller's transaction."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Enum, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.crypto import Keyring
from core.db import Base, UTCDateTime

BODY_AAD = "outbox.body"


class Channel(str, enum.Enum):
    email = "email"
    sms = "sms"


class OutboxStatus(str, enum.Enum):
    pending = "pending"
    sent = "sent"
    failed = "failed"


class OutboxMessage(Base):
    """A message to deliver. The body may hold a secret link, so it is encrypted at rest."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    channel: Mapped[Channel] = mapped_column(Enum(Channel, native_enum=False, length=8))
    kind: Mapped[str] = mapped_column(String(48))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body_enc: Mapped[str] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(
        Enum(OutboxStatus, native_enum=False, length=8), default=OutboxStatus.pending, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)


@dataclass(frozen=True)
class OutgoingMessage:
    """A decrypted message on its way to a sender."""

    id: int
    channel: Channel
    kind: str
    recipient: str
    subject: str
    body: str


def queue_message(
    session: AsyncSession,
    keyring: Keyring,
    *,
    now: datetime,
    channel: Channel,
    kind: str,
    recipient: str,
    subject: str,
    body: str,
) -> OutboxMessage:
    """Add a message to the outbox within the session's transaction; it is delivered after commit."""
    row = OutboxMessage(
        created_at=now,
        channel=channel,
        kind=kind,
        recipient=recipient,
        subject=subject,
        body_enc=keyring.encrypt_text(body, BODY_AAD),
        status=OutboxStatus.pending,
        attempts=0,
    )
    session.add(row)
    return row


def decrypt(row: OutboxMessage, keyring: Keyring) -> OutgoingMessage:
    return OutgoingMessage(
        id=row.id,
        channel=row.channel,
        kind=row.kind,
        recipient=row.recipient,
        subject=row.subject,
        body=keyring.decrypt_text(row.body_enc, BODY_AAD),
    )


async def messages_for(session: AsyncSession, keyring: Keyring, recipient: str, kind: str | None = None) -> list[OutgoingMessage]:
    """Messages queued for a recipient, oldest first (used by the guardian flow and by tests)."""
    query = select(OutboxMessage).where(OutboxMessage.recipient == recipient).order_by(OutboxMessage.id)
    if kind:
        query = query.where(OutboxMessage.kind == kind)
    return [decrypt(row, keyring) for row in (await session.scalars(query)).all()]
