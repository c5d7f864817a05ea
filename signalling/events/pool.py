"""Quick-connect events: clients ask, withdraw and answer offers; approved therapists see the pool and accept."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from accounts import profiles
from accounts.models import Role
from accounts.principal import Principal
from core.logging import get_logger
from core.validation import only_fields
from pool import claim, dashboard, offers, requests
from pool.models import ACTIVE_STATUSES, PoolRequest
from signalling.access import Access
from signalling.pool_rooms import ROOMS_CHANGED, announce_rooms_changed, pool_rooms_for, sync_local_rooms
from signalling.services import Services
from signalling.sockets import EVENTS

log = get_logger("pool")
REQUEST_STATE = "pool.request_state"
SNAPSHOT_DELAY_S = 0.05


@EVENTS.on("pool.request", Access.client)
async def request(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"request": await requests.create_request(svc.pool, principal, data)}


@EVENTS.on("pool.cancel", Access.client)
async def cancel(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    return await requests.cancel_request(svc.pool, principal, data)


@EVENTS.on("pool.respond", Access.client)
async def respond(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    return await requests.respond_to_offer(svc.pool, principal, data)


@EVENTS.on("pool.state", Access.client)
async def state(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    only_fields(data, set())
    return await requests.client_state(svc.pool, principal)


@EVENTS.on("pool.snapshot", Access.approved_therapist)
async def snapshot(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    only_fields(data, set())
    return await dashboard.therapist_snapshot(svc.pool, principal)


@EVENTS.on("pool.accept", Access.approved_therapist)
async def accept(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    return await claim.accept_request(svc.pool, principal, data)


@EVENTS.on("pool.set_availability", Access.approved_therapist)
async def set_availability(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    available = await profiles.set_availability(svc.accounts, principal, data)
    svc.pool.memory.forget_profile(principal.user_id)
    await sync_local_rooms(svc.sio, svc.db, principal.user_id)  # this connection is in the pool rooms before its ack
    await announce_rooms_changed(svc, principal.user_id)
    return {"available": available}


@EVENTS.on_connect
async def join_pool_and_push_state(svc: Services, principal: Principal, sid: str) -> None:
    await svc.pool.presence.connected(principal.user_id, sid)
    if principal.is_approved_therapist:
        for room in await pool_rooms_for(svc.db, principal.user_id):
            await svc.sio.enter_room(sid, room)
    if principal.role in (Role.client, Role.therapist):
        asyncio.get_running_loop().create_task(_push_state(svc, principal, sid))


async def _push_state(svc: Services, principal: Principal, sid: str) -> None:
    """After the handshake completes, send the dashboard snapshot or the client's active request."""
    await asyncio.sleep(SNAPSHOT_DELAY_S)
    try:
        if principal.is_approved_therapist:
            await svc.sio.emit("pool.snapshot", await dashboard.therapist_snapshot(svc.pool, principal), to=sid)
        elif principal.is_client:
            async with svc.db.session() as session:
                active = await session.scalar(select(PoolRequest).where(
                    PoolRequest.client_id == principal.user_id, PoolRequest.status.in_(ACTIVE_STATUSES)))
            if active is not None:
                view = await offers.client_view(svc.pool, active)
                await svc.sio.emit("pool.request_updated", {"request": view}, to=sid)
    except Exception:  # noqa: BLE001 - the client can still ask with pool.snapshot / pool.state
        log.exception("pool.push_state_failed")


@EVENTS.on_disconnect
async def leave_pool(svc: Services, principal: Principal, sid: str) -> None:
    remaining = await svc.pool.presence.disconnected(principal.user_id, sid)
    if remaining == 0 and principal.is_therapist and not svc.stopping:
        await offers.therapist_offline(svc.pool, principal.user_id)


def subscribe_bus(svc: Services) -> None:
    async def rooms_changed(payload: dict[str, Any]) -> None:
        svc.pool.memory.forget_profile(int(payload["user_id"]))
        await sync_local_rooms(svc.sio, svc.db, int(payload["user_id"]))

    async def request_state(payload: dict[str, Any]) -> None:
        svc.pool.memory.apply(payload)

    svc.bus.subscribe(ROOMS_CHANGED, rooms_changed)
    svc.bus.subscribe(REQUEST_STATE, request_state)
