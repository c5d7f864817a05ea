"""The call log: a therapist's calls (with chat and notes), a client's own calls (chat only), and the therapist's
panel of past clients."""

from __future__ import annotations

from typing import Any

from sqlalchemy import desc, select
from sqlalchemy.orm import aliased

from accounts.models import Role, User
from accounts.principal import Principal
from calls import chat, notes
from calls.context import CallsContext
from calls.models import Call
from calls.opening import call_summary
from calls.policy import require_member


def _row(call: Call, other: User) -> dict[str, Any]:
    return {**call_summary(call), "with": {"id": other.id, "display_name": other.display_name}}


async def list_calls(ctx: CallsContext, principal: Principal, limit: int = 200) -> list[dict[str, Any]]:
    """The user's own calls, newest first, each with the other member's name."""
    if principal.role is Role.admin:
        return []
    mine, theirs = (Call.therapist_id, Call.client_id) if principal.is_therapist else (Call.client_id, Call.therapist_id)
    other = aliased(User)
    async with ctx.db.session() as session:
        rows = (await session.execute(
            select(Call, other).join(other, other.id == theirs).where(mine == principal.user_id)
            .order_by(desc(Call.created_at), desc(Call.id)).limit(limit)
        )).all()
    return [_row(call, user) for call, user in rows]


async def call_detail(ctx: CallsContext, principal: Principal, call_id: int) -> dict[str, Any]:
    """One call: the summary and chat for both members; the notes for its therapist only."""
    async with ctx.db.session() as session:
        call = await session.get(Call, call_id)
        member = require_member(call, principal)
        assert call is not None
        other = await session.get(User, call.client_id if member.role == "therapist" else call.therapist_id)
    assert other is not None
    out = {**_row(call, other), "chat": await chat.history(ctx, call_id),
           "transcript_complete": call.transcript_complete}
    if member.role == "therapist":
        out["notes"] = await notes.read(ctx, principal, call_id)
    return out


async def client_panel(ctx: CallsContext, principal: Principal) -> list[dict[str, Any]]:
    """Every client the therapist has had a session with, and their calls, most recent client first."""
    calls = await list_calls(ctx, principal, limit=5000)
    clients: dict[int, dict[str, Any]] = {}
    for row in calls:
        entry = clients.setdefault(row["with"]["id"], {"client": row["with"], "calls": []})
        entry["calls"].append({k: v for k, v in row.items() if k != "with"})
    return list(clients.values())
