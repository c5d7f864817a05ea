"""Connection-level events: who am I, and a round-trip probe."""

from __future__ import annotations

from typing import Any

from accounts.principal import Principal
from signalling.access import Access
from signalling.services import Services
from signalling.sockets import EVENTS


@EVENTS.on("session.whoami", Access.user)
async def whoami(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    status = principal.therapist_status.value if principal.therapist_status else None
    return {"user_id": principal.user_id, "role": principal.role.value, "therapist_status": status}


@EVENTS.on("session.ping", Access.user)
async def ping(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """Answers at once with the server's time; clients use it to measure the signalling round trip."""
    return {"server_time": svc.clock.now().isoformat()}
