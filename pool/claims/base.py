"""The claim store interface.

A request goes through numbered rounds (a new round each time it returns to the pool). Whoever takes a round
first decides it: a therapist (an offer), the client (a withdrawal) or the sweeper (expiry). An offered round is
then resolved once (accepted, declined, timed out, withdrawn). A therapist holds at most one thing at a time:
an offer or a call.
"""

from __future__ import annotations

import enum
from typing import Iterable, Protocol


class ClaimResult(str, enum.Enum):
    won = "won"
    taken = "taken"   # someone else took this round first
    busy = "busy"     # the therapist already holds an offer or a call


class ClaimStore(Protocol):
    async def claim_round(self, request_id: int, round: int, therapist_id: int, ttl_s: float, hold_s: float) -> ClaimResult:
        """Atomically: take the round for the therapist and mark them busy with `offer:<request_id>` for `hold_s`."""
        ...

    async def take_round(self, request_id: int, round: int, owner: str, ttl_s: float) -> bool:
        """Take the round for a non-therapist outcome (`cancel`, `expire`); False if already taken."""
        ...

    async def release_round(self, request_id: int, round: int, owner: str) -> None:
        """Give back a round taken by `owner` whose decision could not be recorded, so others may take it."""
        ...

    async def resolve_round(self, request_id: int, round: int, outcome: str, ttl_s: float) -> bool:
        """First-wins resolution of an offered round; False if it was already resolved."""
        ...

    async def unresolve_round(self, request_id: int, round: int, outcome: str) -> None:
        """Undo a resolution to `outcome` that could not be recorded, so the round can still be resolved."""
        ...

    async def hold(self, therapist_id: int, what: str, ttl_s: float) -> None:
        """Mark the therapist busy with `what` (e.g. `call:12`), replacing what they held."""
        ...

    async def release(self, therapist_id: int, what: str) -> None:
        """Free the therapist if (and only if) they still hold `what`."""
        ...

    async def holding(self, therapist_ids: Iterable[int]) -> dict[int, str]:
        """What each of these therapists holds, for those who hold anything."""
        ...
