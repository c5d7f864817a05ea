"""How requests are shown: to therapists on the dashboard, and to the client who made them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from accounts.models import TherapistProfile, User
from accounts.representation import therapist_public
from core.crypto import Keyring
from pool.models import PoolRequest, RequestStatus


def reason_aad(req: PoolRequest) -> str:
    return f"pool_request.reason:{req.client_id}"


def notes_aad(req: PoolRequest) -> str:
    return f"pool_request.notes:{req.client_id}"


def for_therapist(req: PoolRequest, client: User, keyring: Keyring, words: tuple[str, str] | None = None) -> dict[str, Any]:
    """A dashboard card: the client's summary and their own words (`words` = (reason, notes) when already at hand)."""
    reason, notes = words or (keyring.decrypt_text(req.reason_enc, reason_aad(req)),
                              keyring.decrypt_text(req.notes_enc, notes_aad(req)))
    return {
        "id": req.id,
        "client": {"id": client.id, "display_name": client.display_name, "minor": req.minor},
        "reason": reason,
        "notes": notes,
        "expertise": list(req.expertise),
        "minor": req.minor,
        "created_at": req.created_at.isoformat(),
        "expires_at": req.expires_at.isoformat(),
    }


def for_client(
    req: PoolRequest,
    *,
    therapist: tuple[TherapistProfile, User] | None,
    terms_version: str,
    crisis_resources: tuple[str, ...],
    therapists_online: int | None = None,
) -> dict[str, Any]:
    """The client's own request: its state, the offer card when offered, crisis resources when nobody can come."""
    out: dict[str, Any] = {
        "id": req.id,
        "status": req.status.value,
        "created_at": req.created_at.isoformat(),
        "expires_at": req.expires_at.isoformat(),
        "offer": None,
        "call_id": req.call_id,
    }
    if req.status is RequestStatus.offered and therapist is not None and req.offer_expires_at is not None:
        out["offer"] = {
            "therapist": therapist_public(*therapist),
            "expires_at": req.offer_expires_at.isoformat(),
            "terms_version": terms_version,
        }
    if therapists_online is not None:
        out["therapists_online"] = therapists_online
    if req.status is RequestStatus.expired or therapists_online == 0:
        out["crisis_resources"] = list(crisis_resources)
    return out


def age_s(req: PoolRequest, now: datetime) -> float:
    return max(0.0, (now - req.created_at).total_seconds())
