"""The therapist's private notes: saved as they type (debounced by the page) and on demand, during or after the call,
encrypted at rest, never returned to anyone but the call's therapist."""

from __future__ import annotations

from typing import Any, Mapping

from accounts.principal import Principal
from calls.context import CallsContext
from calls.membership import call_id_of, load_call
from calls.models import CallNote
from calls.policy import require_therapist_member
from core.audit import record_audit
from core.errors import Conflict
from core.validation import integer, only_fields, text


def _aad(call_id: int) -> str:
    return f"notes:{call_id}"


async def save(ctx: CallsContext, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the notes. With `base_version`, refuse (`stale_notes`) if another tab saved meanwhile."""
    only_fields(data, {"call_id", "text", "base_version"})
    call_id = call_id_of(data)
    body = text(data, "text", max_len=ctx.settings.max_notes_chars, required=True, min_len=0, multiline=True)
    base = integer(data, "base_version", minimum=0, maximum=2**31, required=False, default=-1)
    require_therapist_member(await load_call(ctx, call_id), principal)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        note = await session.get(CallNote, call_id, with_for_update=True)
        if note is None:
            note = CallNote(call_id=call_id, therapist_id=principal.user_id, version=0, body_enc="", updated_at=now)
            session.add(note)
        if base >= 0 and base != note.version:
            raise Conflict("the notes were changed in another window; reload them", code="stale_notes",
                           details={"version": note.version})
        note.body_enc = ctx.keyring.encrypt_text(body, _aad(call_id))
        note.version += 1
        note.updated_at = now
        record_audit(session, at=now, actor_id=principal.user_id, action="notes.saved", subject_type="call",
                     subject_id=call_id, fields=["notes"])
        return {"call_id": call_id, "version": note.version, "saved_at": now.isoformat()}


async def read(ctx: CallsContext, principal: Principal, call_id: int) -> dict[str, Any]:
    require_therapist_member(await load_call(ctx, call_id), principal)
    async with ctx.db.session() as session:
        note = await session.get(CallNote, call_id)
    if note is None:
        return {"call_id": call_id, "text": "", "version": 0, "saved_at": None}
    return {"call_id": call_id, "text": ctx.keyring.decrypt_text(note.body_enc, _aad(call_id)), "version": note.version,
            "saved_at": note.updated_at.isoformat()}
