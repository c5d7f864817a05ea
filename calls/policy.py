"""Who may do what with a call: one function per question."""

from __future__ import annotations

from accounts.principal import Principal
from calls.models import Call, CallMember, CallStatus
from core.errors import Conflict, Forbidden, NotFound


def require_member(call: Call | None, principal: Principal) -> CallMember:
    """Only the call's two members; anyone else is refused with `forbidden` and sees nothing of the call."""
    if call is None:
        raise NotFound("there is no such call", code="not_found")
    member = call.member(principal.user_id)
    if member is None:
        raise Forbidden("you are not a member of this call", code="forbidden")
    return member


def require_open(call: Call) -> None:
    if call.status is not CallStatus.open:
        raise Conflict("this call has ended", code="call_ended")


def require_therapist_member(call: Call | None, principal: Principal) -> CallMember:
    """Notes belong to the call's therapist alone."""
    member = require_member(call, principal)
    if member.role != "therapist":
        raise Forbidden("only the therapist can see or write notes", code="forbidden")
    return member
