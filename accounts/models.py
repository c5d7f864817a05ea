"""Tables of the accounts domain."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Enum, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime


class Role(str, enum.Enum):
    client = "client"
    therapist = "therapist"
    admin = "admin"


class ApplicationStatus(str, enum.Enum):
    pending = "pending"
    approved = "approved"
    refused = "refused"


class TokenPurpose(str, enum.Enum):
    verify_email = "verify_email"
    reset_password = "reset_password"
    guardian_consent = "guardian_consent"


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=16, validate_strings=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    display_name: Mapped[str] = mapped_column(String(80))
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    therapist: Mapped[TherapistProfile | None] = relationship(
        back_populates="user", uselist=False, lazy="selectin", foreign_keys="TherapistProfile.user_id"
    )
    client: Mapped[ClientProfile | None] = relationship(
        back_populates="user", uselist=False, lazy="selectin", foreign_keys="ClientProfile.user_id"
    )


class AuthToken(Base):
    """A bearer token; only its keyed hash is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ActionToken(Base):
    """A one-time token sent by e-mail (verify the address, reset the password, guardian consent)."""

    __tablename__ = "action_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[TokenPurpose] = mapped_column(_enum(TokenPurpose))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TherapistProfile(Base):
    """A therapist's application and public profile; `status` stays pending until an admin approves."""

    __tablename__ = "therapist_profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[ApplicationStatus] = mapped_column(_enum(ApplicationStatus), index=True)
    qualifications: Mapped[str] = mapped_column(Text)
    registration_body: Mapped[str] = mapped_column(String(120))
    registration_number: Mapped[str] = mapped_column(String(60))
    insurance_provider: Mapped[str] = mapped_column(String(120))
    insurance_expiry: Mapped[date] = mapped_column(Date)
    bio: Mapped[str] = mapped_column(Text, default="")
    expertise: Mapped[list[str]] = mapped_column(JSON, default=list)
    rate_pence_per_minute: Mapped[int] = mapped_column(Integer, default=0)
    phone: Mapped[str] = mapped_column(String(20), default="")
    available: Mapped[bool] = mapped_column(Boolean, default=False)
    picture: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    picture_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    picture_version: Mapped[int] = mapped_column(Integer, default=0)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)

    user: Mapped[User] = relationship(back_populates="therapist", foreign_keys=[user_id])


class ClientProfile(Base):
    """A client's profile; a minor needs a recorded guardian consent before starting a session."""

    __tablename__ = "client_profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    date_of_birth: Mapped[date] = mapped_column(Date)
    allocated_therapist_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    guardian_name: Mapped[str | None] = mapped_column(String(120), nullable=True)
    guardian_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    guardian_relationship: Mapped[str | None] = mapped_column(String(60), nullable=True)
    guardian_consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    guardian_consent_method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    guardian_consent_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)

    user: Mapped[User] = relationship(back_populates="client", foreign_keys=[user_id])


class ReferralCode(Base):
    """A code a therapist hands to their own clients; registering with it allocates the client to them."""

    __tablename__ = "referral_codes"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)
