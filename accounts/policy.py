"""Authorisation for the accounts domain: one function per question, raising `Forbidden` with a stable code."""

from __future__ import annotations

from datetime import date, datetime

from accounts.models import ClientProfile, Role
from accounts.principal import Principal
from core.errors import Forbidden

ADULT_AGE = 18
MINIMUM_AGE = 13


def age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def is_minor(profile: ClientProfile, now: datetime) -> bool:
    return age_on(profile.date_of_birth, now.date()) < ADULT_AGE


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Forbidden("this needs a " + " or ".join(r.value for r in roles) + " account", code="forbidden")


def require_admin(principal: Principal) -> None:
    require_role(principal, Role.admin)


def require_approved_therapist(principal: Principal) -> None:
    """Only vetted therapists may go available, see the pool or take requests."""
    require_role(principal, Role.therapist)
    if not principal.is_approved_therapist:
        raise Forbidden("your therapist application has not been approved yet", code="not_approved")


def require_can_start_session(profile: ClientProfile, now: datetime) -> None:
    """A client under 18 may not start a session until a guardian's consent is recorded."""
    if is_minor(profile, now) and profile.guardian_consent_at is None:
        raise Forbidden("a parent or guardian must consent before you can start a session", code="guardian_consent_required")
