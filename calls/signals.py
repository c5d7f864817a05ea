"""Validation of WebRTC signalling messages relayed between a call's members (offer, answer, ICE candidates)."""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from core.errors import Invalid, PayloadTooLarge
from core.validation import only_fields

KINDS = ("offer", "answer", "candidate")
MAX_CANDIDATE = 1024


def validate_sdp(data: Mapping[str, Any], max_bytes: int) -> str:
    """The `sdp` field, if it looks like a session description of acceptable size."""
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise Invalid("sdp: is required", code="invalid_sdp", details={"field": "sdp"})
    if len(sdp.encode()) > max_bytes:
        raise PayloadTooLarge(f"sdp: must be at most {max_bytes} bytes")
    if not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise Invalid("sdp: is not a session description", code="invalid_sdp", details={"field": "sdp"})
    return sdp


def candidate_address(candidate: str) -> str | None:
    """The connection address of an ICE candidate line (`candidate:<foundation> <component> <proto> <prio> <addr> ...`)."""
    parts = candidate.split()
    return parts[4] if len(parts) >= 8 and parts[0].startswith("candidate:") else None


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def validate_signal(data: Mapping[str, Any], max_sdp_bytes: int) -> dict[str, Any]:
    """A clean signal `{kind, sdp}` or `{kind: "candidate", candidate: {...}}`; `Invalid` otherwise."""
    only_fields(data, {"call_id", "kind", "sdp", "candidate", "ice_restart"})
    kind = data.get("kind")
    if kind not in KINDS:
        raise Invalid("kind: must be offer, answer or candidate", code="invalid_signal", details={"field": "kind"})
    if kind in ("offer", "answer"):
        out: dict[str, Any] = {"kind": kind, "sdp": validate_sdp(data, max_sdp_bytes)}
        if kind == "offer" and data.get("ice_restart") is True:
            out["ice_restart"] = True
        return out
    cand = data.get("candidate")
    if cand is None:
        return {"kind": "candidate", "candidate": None}  # end of candidates
    if not isinstance(cand, Mapping):
        raise Invalid("candidate: must be an object", code="invalid_signal", details={"field": "candidate"})
    line = cand.get("candidate")
    mid = cand.get("sdpMid")
    index = cand.get("sdpMLineIndex")
    if not isinstance(line, str) or len(line) > MAX_CANDIDATE or (line and not line.startswith("candidate:")):
        raise Invalid("candidate.candidate: is not an ICE candidate", code="invalid_signal", details={"field": "candidate"})
    if mid is not None and (not isinstance(mid, str) or len(mid) > 64):
        raise Invalid("candidate.sdpMid: is invalid", code="invalid_signal", details={"field": "candidate"})
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 64):
        raise Invalid("candidate.sdpMLineIndex: is invalid", code="invalid_signal", details={"field": "candidate"})
    return {"kind": "candidate", "candidate": {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}}


def keep_candidate(signal: Mapping[str, Any], loopback_only: bool) -> bool:
    """In loopback-only mode (tests), drop candidates that point off this machine."""
    if not loopback_only or signal["kind"] != "candidate" or signal["candidate"] is None:
        return True
    line = signal["candidate"]["candidate"]
    return not line or is_loopback(candidate_address(line))
