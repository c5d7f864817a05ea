"""The presence interface."""

from __future__ import annotations

from typing import Iterable, Protocol


class PresenceStore(Protocol):
    async def connected(self, user_id: int, sid: str) -> None: ...

    async def disconnected(self, user_id: int, sid: str) -> int:
        """Forget the connection; return how many the user still has, across all processes."""
        ...

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        """Those of `user_ids` with at least one live connection."""
        ...

    async def sids(self, user_ids: Iterable[int]) -> list[str]:
        """Every live connection id of these users, in any process."""
        ...

    async def refresh(self) -> None:
        """Keep this process's connections alive (called periodically)."""
        ...
