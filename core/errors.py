"""Errors as values with stable machine codes.

Domain code raises these; `signalling` turns them into an HTTP status or a Socket.IO error ack in one place.
Every code is listed in docs/PROTOCOL.md.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base error: a stable `code`, a human `message`, the HTTP `status`, optional `details`."""

    code: str = "error"
    status: int = 400

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class Invalid(AppError):
    """The input is malformed or breaks a rule of its shape (400)."""

    code = "invalid"
    status = 400


class Unauthorized(AppError):
    """No valid credentials (401)."""

    code = "unauthorized"
    status = 401


class Forbidden(AppError):
    """Authenticated, but this user may not do this (403)."""

    code = "forbidden"
    status = 403


class NotFound(AppError):
    """The thing does not exist, or this user may not know it exists (404)."""

    code = "not_found"
    status = 404


class Conflict(AppError):
    """The request clashes with the current state (409), e.g. `email_taken`, `taken`."""

    code = "conflict"
    status = 409


class PayloadTooLarge(AppError):
    """The body or a field is larger than allowed (413)."""

    code = "too_large"
    status = 413


class UnsupportedMedia(AppError):
    """The body is not of an accepted type (415)."""

    code = "unsupported_media"
    status = 415


class RateLimited(AppError):
    """Too many attempts; `retry_after` seconds until the next is allowed (429)."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after": round(retry_after, 1)})
        self.retry_after = retry_after


class Unavailable(AppError):
    """A dependency is down (503)."""

    code = "unavailable"
    status = 503


class DecryptionError(AppError):
    """Ciphertext could not be authenticated: wrong or unknown key, or tampered data."""

    code = "decryption_failed"
    status = 500


class ConfigError(Exception):
    """Settings are missing or invalid; raised at start-up, never at request time."""
