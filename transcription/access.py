"""Who may read a call's transcript and recordings (and the search over one's own calls)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from accounts.principal import Principal
from calls.models import Call
from calls.policy import require_member, require_therapist_member
from core.errors import Forbidden
from core.settings import Settings
from transcription.models import TranscriptSegment


def may_read_transcript(call: Call | None, principal: Principal, settings: Settings) -> bool:
    """The call's therapist always; its client only where the settings allow; nobody else (`forbidden`)."""
    member = require_member(call, principal)
    return member.role == "therapist" or settings.transcripts_to_client


def require_transcript_reader(call: Call | None, principal: Principal, settings: Settings) -> None:
    if not may_read_transcript(call, principal, settings):
        raise Forbidden("the transcript is for the therapist", code="forbidden")


def require_recording_reader(call: Call | None, principal: Principal) -> None:
    require_therapist_member(call, principal)


SEARCH_CHUNK = 200


async def search(session: Any, keyring: Any, therapist_id: int, query: str, limit: int = 100) -> list[dict[str, Any]]:
    """Segments of the therapist's own calls whose text contains `query` (decrypted here; no plain-text index). The
    decryption runs in a worker thread, a chunk of segments at a time, so the event loop is never held by it."""
    import asyncio

    from transcription.store import as_dict

    rows = (await session.scalars(
        select(TranscriptSegment).join(Call, Call.id == TranscriptSegment.call_id)
        .where(Call.therapist_id == therapist_id).order_by(TranscriptSegment.call_id.desc(), TranscriptSegment.start_ms)
    )).all()
    needle = query.casefold()

    def matching(chunk: list[TranscriptSegment]) -> list[dict[str, Any]]:
        return [seg for seg in (as_dict(row, keyring) for row in chunk) if needle in seg["text"].casefold()]

    found: list[dict[str, Any]] = []
    for i in range(0, len(rows), SEARCH_CHUNK):
        found += await asyncio.to_thread(matching, list(rows[i:i + SEARCH_CHUNK]))
        if len(found) >= limit:
            break
    return found[:limit]
