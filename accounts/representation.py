"""How accounts are shown to the outside: plain dicts for JSON, with only what the viewer may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from accounts.models import ClientProfile, ReferralCode, TherapistProfile, User
from accounts.policy import is_minor


def picture_url(profile: TherapistProfile) -> str | None:
    if not profile.picture_type:
        return None
    return f"/api/therapists/{profile.user_id}/picture?v={profile.picture_version}"


def therapist_public(profile: TherapistProfile, user: User) -> dict[str, Any]:
    """What a client sees of a therapist (the offer card)."""
    return {
        "id": user.id,
        "display_name": user.display_name,
        "bio": profile.bio,
        "expertise": list(profile.expertise),
        "rate_pence_per_minute": profile.rate_pence_per_minute,
        "picture_url": picture_url(profile),
    }


def client_summary(profile: ClientProfile, user: User, now: datetime) -> dict[str, Any]:
    """What a therapist sees of a client in the pool."""
    return {"id": user.id, "display_name": user.display_name, "minor": is_minor(profile, now)}


def me(user: User, now: datetime) -> dict[str, Any]:
    """The signed-in user's own account."""
    out: dict[str, Any] = {
        "id": user.id,
        "email": user.email,
        "role": user.role.value,
        "display_name": user.display_name,
        "email_verified": user.email_verified_at is not None,
        "created_at": user.created_at.isoformat(),
    }
    if user.therapist is not None:
        t = user.therapist
        out["therapist"] = {
            "status": t.status.value,
            "qualifications": t.qualifications,
            "registration_body": t.registration_body,
            "registration_number": t.registration_number,
            "insurance_provider": t.insurance_provider,
            "insurance_expiry": t.insurance_expiry.isoformat(),
            "bio": t.bio,
            "expertise": list(t.expertise),
            "rate_pence_per_minute": t.rate_pence_per_minute,
            "phone": t.phone,
            "available": t.available,
            "picture_url": picture_url(t),
        }
    if user.client is not None:
        c = user.client
        out["client"] = {
            "date_of_birth": c.date_of_birth.isoformat(),
            "minor": is_minor(c, now),
            "guardian_consent": guardian_consent(c),
            "guardian_consent_requested": c.guardian_email is not None,
            "allocated_therapist_id": c.allocated_therapist_id,
        }
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def guardian_consent(profile: ClientProfile) -> dict[str, Any] | None:
    """The recorded consent of a minor's guardian, or None."""
    if profile.guardian_consent_at is None:
        return None
    return {"at": profile.guardian_consent_at.isoformat(), "method": profile.guardian_consent_method,
            "name": profile.guardian_name}


def client_consent(profile: ClientProfile, user: User, now: datetime) -> dict[str, Any]:
    """What an admin sees after recording a guardian's consent."""
    return {"id": user.id, "display_name": user.display_name, "minor": is_minor(profile, now),
            "guardian_consent": guardian_consent(profile)}


def application(profile: TherapistProfile, user: User) -> dict[str, Any]:
    """A therapist application as admins review it."""
    return {
        "id": user.id,
        "display_name": user.display_name,
        "email": user.email,
        "email_verified": user.email_verified_at is not None,
        "qualifications": profile.qualifications,
        "registration_body": profile.registration_body,
        "registration_number": profile.registration_number,
        "insurance_provider": profile.insurance_provider,
        "insurance_expiry": profile.insurance_expiry.isoformat(),
        "applied_at": profile.applied_at.isoformat(),
        "status": profile.status.value,
        "reviewed_at": _iso(profile.reviewed_at),
        "reviewed_by": profile.reviewed_by,
    }


def referral_code(row: ReferralCode) -> dict[str, Any]:
    """One of a therapist's own referral codes."""
    return {
        "code": row.code,
        "created_at": row.created_at.isoformat(),
        "revoked_at": _iso(row.revoked_at),
        "active": row.revoked_at is None,
        "uses": row.uses,
    }
