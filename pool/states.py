"""What each server process remembers of open requests and of therapists' eligibility, so that the accepts of a race
are answered without touching the database: only the winner's offer is written.

A remembered state is only ever a shortcut: the claim store decides who wins a round, and the database refuses a
second offer for a round, so a stale entry can at worst send an accept down the slow path (which reads the database)
or answer `taken` for a round that is indeed decided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from accounts.models import ApplicationStatus, TherapistProfile
from pool.models import PoolRequest, RequestStatus

Publish = Callable[[dict[str, Any]], Awaitable[None]]
PROFILE_TTL_S = 30.0


@dataclass(frozen=True)
class RequestState:
    id: int
    round: int
    status: str
    client_id: int
    expertise: tuple[str, ...]
    declined: frozenset[int]

    @property
    def open(self) -> bool:
        return self.status == RequestStatus.open.value

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "round": self.round, "status": self.status, "client_id": self.client_id,
                "expertise": list(self.expertise), "declined": sorted(self.declined)}


@dataclass(frozen=True)
class Eligibility:
    approved: bool
    available: bool
    expertise: tuple[str, ...]
    at: float


class PoolMemory:
    """Request states (shared with the other processes through `publish`) and therapist eligibility (per process)."""

    def __init__(self, publish: Publish | None = None, max_requests: int = 10_000) -> None:
        self.publish = publish
        self.max_requests = max_requests
        self.requests: dict[int, RequestState] = {}
        self.profiles: dict[int, Eligibility] = {}

    async def remember(self, req: PoolRequest, declined: list[int] | frozenset[int]) -> RequestState:
        """Record a request's new state here and in every other process."""
        state = RequestState(req.id, req.round, req.status.value, req.client_id, tuple(req.expertise), frozenset(declined))
        self.apply(state.to_dict())
        if self.publish is not None:
            await self.publish(state.to_dict())
        return state

    def apply(self, payload: dict[str, Any]) -> None:
        state = RequestState(int(payload["id"]), int(payload["round"]), str(payload["status"]), int(payload["client_id"]),
                             tuple(payload["expertise"]), frozenset(int(t) for t in payload["declined"]))
        current = self.requests.get(state.id)
        if current is not None and state.round < current.round:
            return  # an older state arrived late
        if state.status not in (RequestStatus.open.value, RequestStatus.offered.value):
            self.requests.pop(state.id, None)
            return
        if len(self.requests) >= self.max_requests:
            self.requests.pop(next(iter(self.requests)))
        self.requests[state.id] = state

    def request(self, request_id: int) -> RequestState | None:
        return self.requests.get(request_id)

    def eligibility(self, therapist_id: int) -> Eligibility | None:
        found = self.profiles.get(therapist_id)
        if found is None or time.monotonic() - found.at > PROFILE_TTL_S:
            return None
        return found

    def remember_profile(self, profile: TherapistProfile) -> Eligibility:
        found = Eligibility(profile.status is ApplicationStatus.approved, profile.available, tuple(profile.expertise),
                            time.monotonic())
        self.profiles[profile.user_id] = found
        return found

    def forget_profile(self, therapist_id: int) -> None:
        self.profiles.pop(therapist_id, None)
