"""The client's side: ask for a session now, withdraw, answer the offer, see the state of the request."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Mapping

from sqlalchemy import desc, select
from sqlalchemy.exc import IntegrityError

from accounts.models import ClientProfile, User
from accounts.policy import is_minor, require_can_start_session
from accounts.principal import Principal
from billing.wallet import require_balance_to_request
from core.errors import Conflict, Invalid, NotFound, RateLimited
from core.logging import get_logger
from core.validation import boolean, integer, only_fields, string_list, text
from pool.context import PoolContext
from pool.eligibility import available_therapists, require_own_request
from pool.models import ACTIVE_STATUSES, OfferOutcome, PoolRequest, RequestStatus
from pool.offers import accept_offer, client_view, end_offer, publish_to_client
from pool.representation import for_therapist, notes_aad, reason_aad
from pool.transitions import move

log = get_logger("pool")
MAX_REASON = 500
MAX_NOTES = 2000
CANCEL_TRIES = 50


async def create_request(ctx: PoolContext, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """Put a new request in the pool, show it on the dashboards, alert therapists by text; returns the client's view."""
    only_fields(data, {"reason", "notes", "expertise"})
    reason = text(data, "reason", max_len=MAX_REASON, multiline=True)
    notes = text(data, "notes", max_len=MAX_NOTES, required=False, min_len=0, multiline=True)
    expertise = string_list(data, "expertise", max_items=5, max_len=60)
    now = ctx.clock.now()
    async with ctx.db.session() as session:
        profile = await session.get(ClientProfile, principal.user_id)
        client = await session.get(User, principal.user_id)
        active = await session.scalar(select(PoolRequest.id).where(
            PoolRequest.client_id == principal.user_id, PoolRequest.status.in_(ACTIVE_STATUSES)))
    if profile is None or client is None:
        raise NotFound("only clients can ask for a session", code="not_found")
    require_can_start_session(profile, now)
    if active is not None:
        raise Conflict("you already have a request waiting", code="already_open")
    await require_balance_to_request(ctx.db, ctx.settings, principal.user_id)
    wait = await ctx.limiter.hit(f"pool.request:{principal.user_id}", ctx.settings.requests_per_client,
                                 ctx.settings.requests_window_s)
    if wait > 0:
        raise RateLimited("you have asked many times in a short while; please wait a moment", retry_after=wait)

    req = PoolRequest(
        client_id=principal.user_id, status=RequestStatus.open, round=0, expertise=expertise, minor=is_minor(profile, now),
        created_at=now, expires_at=now + timedelta(seconds=ctx.settings.request_ttl_s),
    )
    req.reason_enc = ctx.keyring.encrypt_text(reason, reason_aad(req))
    req.notes_enc = ctx.keyring.encrypt_text(notes, notes_aad(req))
    try:
        async with ctx.db.transaction() as session:
            session.add(req)
    except IntegrityError:
        raise Conflict("you already have a request waiting", code="already_open") from None
    card = for_therapist(req, client, ctx.keyring, words=(reason, notes))
    await ctx.broadcast.to_dashboards(expertise, "pool.request_added", {"request": card})
    log.info("pool.requested", request_id=req.id, minor=req.minor, expertise=len(expertise))
    await ctx.memory.remember(req, [])
    candidates = await available_therapists(ctx, expertise)
    online = len(await ctx.presence.online(candidates))
    asyncio.get_running_loop().create_task(_alert(ctx, candidates, req.id))
    return await publish_to_client(ctx, req, therapists_online=online)  # the client's other tabs show it too


async def _alert(ctx: PoolContext, therapist_ids: list[int], request_id: int) -> None:
    try:
        await ctx.notifier.someone_waiting(therapist_ids)
    except Exception:  # noqa: BLE001 - a failed alert must not affect the request
        log.exception("pool.alert_failed", request_id=request_id)


async def cancel_request(ctx: PoolContext, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """The client withdraws; a pending offer ends and its therapist is told."""
    only_fields(data, {"request_id"})
    request_id = integer(data, "request_id", minimum=1, maximum=2**62)
    for attempt in range(CANCEL_TRIES):
        async with ctx.db.session() as session:
            req = require_own_request(await session.get(PoolRequest, request_id), principal.user_id)
        if req.status is RequestStatus.open:
            taken = await ctx.claims.take_round(req.id, req.round, "cancel", ctx.round_ttl_s)
            # The last try lets the database decide: every change is a conditional UPDATE of (id, round, status), so a
            # claim whose owner never recorded anything (a crashed process) cannot keep the client from withdrawing.
            if taken or attempt == CANCEL_TRIES - 1:
                try:
                    async with ctx.db.transaction() as session:
                        moved = await move(session, req, RequestStatus.cancelled, closed_at=ctx.clock.now())
                except BaseException:
                    if taken:
                        await ctx.claims.release_round(req.id, req.round, "cancel")
                    raise
                if moved:
                    req.status = RequestStatus.cancelled
                    await ctx.memory.remember(req, [])
                    await ctx.broadcast.to_dashboards((), "pool.request_removed", {"request_id": req.id, "reason": "cancelled"})
                    log.info("pool.cancelled", request_id=req.id)
                    return {"request": await publish_to_client(ctx, req)}
        elif req.status is RequestStatus.offered:
            ended = await end_offer(ctx, req.id, req.round, OfferOutcome.cancelled)
            if ended is not None:
                return {"request": await client_view(ctx, ended)}
        else:
            raise Conflict("this request is no longer waiting", code="not_active")
        await asyncio.sleep(0.01)  # a therapist's claim of this round is being recorded; look again
    raise Conflict("the request is changing; try again", code="busy")


async def respond_to_offer(ctx: PoolContext, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """Accept (with the terms and the recording choice) or decline the offered therapist."""
    only_fields(data, {"request_id", "accept", "accept_terms", "terms_version", "recording_consent"})
    request_id = integer(data, "request_id", minimum=1, maximum=2**62)
    accept = boolean(data, "accept")
    async with ctx.db.session() as session:
        req = require_own_request(await session.get(PoolRequest, request_id), principal.user_id)
    if req.status is not RequestStatus.offered:
        raise Conflict("there is no offer to answer", code="no_offer")
    if not accept:
        ended = await end_offer(ctx, req.id, req.round, OfferOutcome.declined)
        if ended is None:
            raise Conflict("this offer has already ended", code="offer_closed")
        return {"request": await client_view(ctx, ended)}
    if not boolean(data, "accept_terms", required=False):
        raise Invalid("accept the terms to start the session", code="terms_required", details={"field": "accept_terms"})
    if text(data, "terms_version", max_len=32) != ctx.settings.terms_version:
        raise Invalid("the terms have changed; read them again", code="terms_outdated", details={"field": "terms_version"})
    recording = boolean(data, "recording_consent")
    call = await accept_offer(ctx, req, recording_consent=recording)
    if call is None:
        raise Conflict("this offer has already ended", code="offer_closed")
    return {"call": call}


async def client_state(ctx: PoolContext, principal: Principal) -> dict[str, Any]:
    """The client's latest request (active or not), for a page load or a reconnect."""
    async with ctx.db.session() as session:
        req = await session.scalar(
            select(PoolRequest).where(PoolRequest.client_id == principal.user_id).order_by(desc(PoolRequest.id)).limit(1)
        )
    return {"request": None if req is None else await client_view(ctx, req)}

