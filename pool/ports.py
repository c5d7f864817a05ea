"""What the pool needs the server to do for it: push events to people. `signalling` implements these."""

from __future__ import annotations

from typing import Any, Protocol, Sequence


class PoolBroadcast(Protocol):
    async def to_user(self, user_id: int, event: str, data: dict[str, Any]) -> None:
        """Every open connection of one user."""
        ...

    async def to_dashboards(
        self, expertise: Sequence[str], event: str, data: dict[str, Any], exclude_users: Sequence[int] = ()
    ) -> None:
        """The dashboards of online, available, approved therapists (those matching `expertise` when it is given)."""
        ...

    async def place_dashboards(self, therapist_id: int, expertise: Sequence[str], *, in_pool: bool) -> None:
        """Every connection of the therapist, in every process, joins (`in_pool`) or leaves the dashboards of their
        `expertise`, before any event sent after this returns reaches them."""
        ...


class Notifier(Protocol):
    async def someone_waiting(self, therapist_ids: Sequence[int]) -> int:
        """Alert these therapists (e.g. by text message) that someone is waiting; returns how many were alerted."""
        ...
