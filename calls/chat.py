"""In-call chat: stored encrypted, ordered by id, acknowledged to the sender, delivered to both, replayed on rejoin."""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from accounts.principal import Principal
from calls.context import CallsContext
from calls.membership import call_id_of, load_call
from calls.models import ChatMessage
from calls.policy import require_member, require_open
from core.errors import RateLimited
from core.validation import only_fields, text

CHAT_BURST = 30
CHAT_WINDOW_S = 10


def _aad(call_id: int) -> str:
    return f"chat:{call_id}"


def as_dict(msg: ChatMessage, keyring: Any) -> dict[str, Any]:
    return {
        "id": msg.id,
        "call_id": msg.call_id,
        "sender_id": msg.sender_id,
        "sender_role": msg.sender_role,
        "text": keyring.decrypt_text(msg.body_enc, _aad(msg.call_id)),
        "client_ref": msg.client_ref,
        "created_at": msg.created_at.isoformat(),
    }


async def send(ctx: CallsContext, principal: Principal, data: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Store a message (once per `client_ref`); returns it as both members receive it, and whether it is new."""
    only_fields(data, {"call_id", "text", "client_ref"})
    call_id = call_id_of(data)
    body = text(data, "text", max_len=ctx.settings.max_chat_chars, multiline=True)
    client_ref = text(data, "client_ref", max_len=64, required=False, min_len=0) or None
    call = await load_call(ctx, call_id)
    member = require_member(call, principal)
    assert call is not None
    require_open(call)
    wait = await ctx.limiter.hit(f"chat:{call_id}:{principal.user_id}", CHAT_BURST, CHAT_WINDOW_S)
    if wait > 0:
        raise RateLimited("you are sending messages too quickly", retry_after=wait)
    msg = ChatMessage(call_id=call_id, sender_id=principal.user_id, sender_role=member.role, client_ref=client_ref,
                      body_enc=ctx.keyring.encrypt_text(body, _aad(call_id)), created_at=ctx.clock.now())
    try:
        async with ctx.db.transaction() as session:
            session.add(msg)
        return as_dict(msg, ctx.keyring), True
    except IntegrityError:
        async with ctx.db.session() as session:
            existing = await session.scalar(select(ChatMessage).where(
                ChatMessage.call_id == call_id, ChatMessage.sender_id == principal.user_id,
                ChatMessage.client_ref == client_ref))
        assert existing is not None
        return as_dict(existing, ctx.keyring), False


async def history(ctx: CallsContext, call_id: int) -> list[dict[str, Any]]:
    async with ctx.db.session() as session:
        rows = (await session.scalars(select(ChatMessage).where(ChatMessage.call_id == call_id).order_by(ChatMessage.id))).all()
    return [as_dict(m, ctx.keyring) for m in rows]
