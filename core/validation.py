"""Parsing of untrusted input (JSON bodies, event payloads) into typed values, with `Invalid` errors naming the field."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Mapping

from core.errors import Invalid

_EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _fail(field: str, message: str, code: str = "invalid") -> Invalid:
    return Invalid(f"{field}: {message}", code=code, details={"field": field})


def require_mapping(data: Any, what: str = "body") -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise Invalid(f"{what} must be a JSON object", details={"field": what})
    return data


def text(
    data: Mapping[str, Any],
    field: str,
    *,
    max_len: int,
    min_len: int = 1,
    required: bool = True,
    default: str = "",
    multiline: bool = False,
) -> str:
    """A string field, stripped; control characters refused (newlines allowed when `multiline`)."""
    value = data.get(field)
    if value is None:
        if required:
            raise _fail(field, "is required", "missing_field")
        return default
    if not isinstance(value, str):
        raise _fail(field, "must be a string")
    value = value.strip()
    check = value.replace("\n", "").replace("\r", "").replace("\t", "") if multiline else value
    if _CONTROL.search(check) or (not multiline and ("\n" in value or "\r" in value)):
        raise _fail(field, "contains control characters")
    if len(value) < min_len:
        raise _fail(field, "is required" if not value else f"must be at least {min_len} characters",
                    "missing_field" if not value else "invalid")
    if len(value) > max_len:
        raise _fail(field, f"must be at most {max_len} characters", "too_long")
    return value


def email(data: Mapping[str, Any], field: str = "email") -> str:
    value = text(data, field, max_len=254).lower()
    if not _EMAIL.match(value):
        raise _fail(field, "is not an e-mail address")
    return value


def phone(data: Mapping[str, Any], field: str = "phone", *, required: bool = False) -> str:
    value = text(data, field, max_len=16, required=required, min_len=0)
    if value and not _PHONE.match(value.replace(" ", "")):
        raise _fail(field, "must be in international format, e.g. +447700900123")
    return value.replace(" ", "")


def integer(data: Mapping[str, Any], field: str, *, minimum: int, maximum: int, required: bool = True,
            default: int = 0) -> int:
    value = data.get(field)
    if value is None:
        if required:
            raise _fail(field, "is required", "missing_field")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, "must be a whole number")
    if not minimum <= value <= maximum:
        raise _fail(field, f"must be between {minimum} and {maximum}")
    return value


def boolean(data: Mapping[str, Any], field: str, *, required: bool = True, default: bool = False) -> bool:
    value = data.get(field)
    if value is None:
        if required:
            raise _fail(field, "is required", "missing_field")
        return default
    if not isinstance(value, bool):
        raise _fail(field, "must be true or false")
    return value


def iso_date(data: Mapping[str, Any], field: str, *, required: bool = True) -> date | None:
    raw = text(data, field, max_len=10, required=required, min_len=0)
    if not raw:
        if required:
            raise _fail(field, "is required", "missing_field")
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _fail(field, "must be a date like 2001-04-30") from None


def string_list(data: Mapping[str, Any], field: str, *, max_items: int, max_len: int, required: bool = False) -> list[str]:
    value = data.get(field)
    if value is None:
        if required:
            raise _fail(field, "is required", "missing_field")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(field, "must be a list of strings")
    if len(value) > max_items:
        raise _fail(field, f"must have at most {max_items} items", "too_long")
    out: list[str] = []
    for item in value:
        item = item.strip()
        if not item or len(item) > max_len or _CONTROL.search(item):
            raise _fail(field, f"items must be 1 to {max_len} plain characters")
        if item.lower() not in (o.lower() for o in out):
            out.append(item)
    return out


def only_fields(data: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse unknown fields, so a typo or a smuggled `role` is an error, not silently ignored."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}", code="unknown_field", details={"fields": unknown})
