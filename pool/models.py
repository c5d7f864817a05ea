"""Tables of the quick-connect pool: requests, and one offer row per claimed round (the record of who won)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class RequestStatus(str, enum.Enum):
    open = "open"            # in the pool, waiting for a therapist
    offered = "offered"      # a therapist claimed it; the client is deciding
    accepted = "accepted"    # the client accepted: a call exists
    expired = "expired"      # nobody took it in time
    cancelled = "cancelled"  # the client withdrew it


class OfferOutcome(str, enum.Enum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    timed_out = "timed_out"    # the client did not answer in time
    withdrawn = "withdrawn"    # the therapist went offline
    cancelled = "cancelled"    # the client withdrew the whole request


ACTIVE_STATUSES = (RequestStatus.open, RequestStatus.offered)


class PoolRequest(Base):
    __tablename__ = "pool_requests"
    __table_args__ = (
        # One active request per client, enforced by the database even when two tabs race.
        Index(
            "uq_pool_requests_one_active_per_client", "client_id", unique=True,
            sqlite_where=text("status IN ('open', 'offered')"), postgresql_where=text("status IN ('open', 'offered')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[RequestStatus] = mapped_column(Enum(RequestStatus, native_enum=False, length=16), index=True)
    #: Incremented each time the request returns to the pool; a claim is for one round.
    round: Mapped[int] = mapped_column(Integer, default=0)
    reason_enc: Mapped[str] = mapped_column(Text)
    notes_enc: Mapped[str] = mapped_column(Text)
    expertise: Mapped[list[str]] = mapped_column(JSON, default=list)
    minor: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    offered_to: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    offer_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    call_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PoolOffer(Base):
    """One row per round that a therapist won; the unique key makes a second winner impossible to record."""

    __tablename__ = "pool_offers"
    __table_args__ = (UniqueConstraint("request_id", "round", name="uq_pool_offers_request_round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("pool_requests.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[OfferOutcome] = mapped_column(Enum(OfferOutcome, native_enum=False, length=16))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    terms_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
