"""Field rules of the accounts domain, on top of the generic parsers in `core.validation`."""

from __future__ import annotations

from datetime import date
from typing import Any, Mapping

from core.errors import Invalid
from core.validation import boolean, email, integer, iso_date, phone, string_list, text

__all__ = ["email", "text", "iso_date", "password", "display_name", "therapist_application", "therapist_profile", "boolean"]

MAX_PASSWORD = 256
MAX_RATE_PENCE = 10_000


def password(data: Mapping[str, Any], min_length: int, field: str = "password") -> str:
    value = data.get(field)
    if value is None or value == "":
        raise Invalid(f"{field}: is required", code="missing_field", details={"field": field})
    if not isinstance(value, str):
        raise Invalid(f"{field}: must be a string", details={"field": field})
    if len(value) < min_length:
        raise Invalid(f"{field}: must be at least {min_length} characters", code="weak_password", details={"field": field})
    if len(value) > MAX_PASSWORD:
        raise Invalid(f"{field}: must be at most {MAX_PASSWORD} characters", code="too_long", details={"field": field})
    return value


def display_name(data: Mapping[str, Any]) -> str:
    return text(data, "display_name", max_len=80)


def therapist_application(data: Mapping[str, Any], today: date) -> dict[str, Any]:
    """The vetting fields of an application (qualifications, registration body, insurance)."""
    expiry: date = iso_date(data, "insurance_expiry")  # type: ignore[assignment]
    if expiry <= today:
        raise Invalid("insurance_expiry: your insurance must be current", code="insurance_expired",
                      details={"field": "insurance_expiry"})
    return {
        "qualifications": text(data, "qualifications", max_len=2000, multiline=True),
        "registration_body": text(data, "registration_body", max_len=120),
        "registration_number": text(data, "registration_number", max_len=60),
        "insurance_provider": text(data, "insurance_provider", max_len=120),
        "insurance_expiry": expiry,
    }


def therapist_profile(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """Public profile fields; with `partial`, only those present in `data`."""
    out: dict[str, Any] = {}
    if not partial or "bio" in data:
        out["bio"] = text(data, "bio", max_len=4000, required=False, min_len=0, multiline=True)
    if not partial or "expertise" in data:
        out["expertise"] = string_list(data, "expertise", max_items=20, max_len=60)
    if not partial or "rate_pence_per_minute" in data:
        out["rate_pence_per_minute"] = integer(data, "rate_pence_per_minute", minimum=0, maximum=MAX_RATE_PENCE,
                                               required=False, default=0)
    if not partial or "phone" in data:
        out["phone"] = phone(data)
    return out
