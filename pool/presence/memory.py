"""Presence in process memory (embedded mode)."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable


class MemoryPresence:
    def __init__(self) -> None:
        self._sids: dict[int, set[str]] = defaultdict(set)

    async def connected(self, user_id: int, sid: str) -> None:
        self._sids[user_id].add(sid)

    async def disconnected(self, user_id: int, sid: str) -> int:
        sids = self._sids.get(user_id, set())
        sids.discard(sid)
        if not sids:
            self._sids.pop(user_id, None)
        return len(sids)

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        return {u for u in user_ids if self._sids.get(u)}

    async def sids(self, user_ids: Iterable[int]) -> list[str]:
        return [sid for u in user_ids for sid in self._sids.get(u, ())]

    async def refresh(self) -> None:
        return None
