"""Opening a call: the same for quick connect, bookings and test calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calls.models import Call, CallKind, CallMember, CallStatus, Consent


def open_call(
    session: AsyncSession,
    *,
    now: datetime,
    kind: CallKind,
    therapist_id: int,
    client_id: int,
    terms_version: str,
    recording_consent: bool,
    request_id: int | None = None,
) -> Call:
    """Add an open call and the client's consent record to the session's transaction."""
    call = Call(
        kind=kind, status=CallStatus.open, therapist_id=therapist_id, client_id=client_id, request_id=request_id,
        recording_consent=recording_consent, terms_version=terms_version, created_at=now,
    )
    call.members = [CallMember(user_id=therapist_id, role="therapist", joins=0),
                    CallMember(user_id=client_id, role="client", joins=0)]
    session.add(call)
    return call


def record_consent(session: AsyncSession, call: Call, *, now: datetime) -> Consent:
    consent = Consent(
        client_id=call.client_id, call_id=call.id, terms_version=call.terms_version, terms_accepted_at=now,
        recording_consent=call.recording_consent, at=now,
    )
    session.add(consent)
    return consent


def call_summary(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "kind": call.kind.value,
        "status": call.status.value,
        "therapist_id": call.therapist_id,
        "client_id": call.client_id,
        "recording_consent": call.recording_consent,
        "created_at": call.created_at.isoformat(),
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "duration_s": duration_s(call),
        "end_reason": call.end_reason,
        "ended_by": ended_by_role(call),
    }


def ended_by_role(call: Call) -> str | None:
    """The role whose act or absence ended the call: who hung up (`hangup`), who stayed away past the grace period
    (`dropped`), who never came (`no_show`); None when neither did (`balance_exhausted`, both never came, or open)."""
    return next((m.role for m in call.members if call.ended_by is not None and m.user_id == call.ended_by), None)


def duration_s(call: Call) -> int | None:
    """Seconds from when both were first in the call to its end (or None before it started)."""
    if call.started_at is None:
        return None
    end = call.ended_at
    return None if end is None else max(0, int((end - call.started_at).total_seconds()))
