"""Socket.IO rooms of the pool: which dashboards a request reaches, and the broadcast port the pool domain uses."""

from __future__ import annotations

from typing import Any, Sequence

import socketio

from accounts.models import ApplicationStatus, TherapistProfile
from core.bus import EventBus
from core.db import Database
from pool.eligibility import slug
from pool.presence import PresenceStore

POOL_ROOM = "pool"
ROOMS_CHANGED = "therapist.rooms_changed"


def expertise_room(expertise: str) -> str:
    return f"pool:exp:{slug(expertise)}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


class SocketPoolBroadcast:
    """Implements `pool.ports.PoolBroadcast` with Socket.IO rooms (shared across processes by the Redis manager)."""

    def __init__(self, sio: socketio.AsyncServer, presence: PresenceStore) -> None:
        self.sio, self.presence = sio, presence

    async def to_user(self, user_id: int, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, to=user_room(user_id))

    async def to_dashboards(
        self, expertise: Sequence[str], event: str, data: dict[str, Any], exclude_users: Sequence[int] = ()
    ) -> None:
        rooms: str | list[str] = [expertise_room(e) for e in expertise] if expertise else POOL_ROOM
        skip = await self.presence.sids(exclude_users) if exclude_users else None
        await self.sio.emit(event, data, to=rooms, skip_sid=skip)


async def pool_rooms_for(db: Database, user_id: int) -> list[str]:
    """The pool rooms a therapist's connections belong in now: none unless approved and available."""
    async with db.session() as session:
        profile = await session.get(TherapistProfile, user_id)
    if profile is None or profile.status is not ApplicationStatus.approved or not profile.available:
        return []
    return [POOL_ROOM, *(expertise_room(e) for e in profile.expertise)]


async def sync_local_rooms(sio: socketio.AsyncServer, db: Database, user_id: int) -> None:
    """Put this process's connections of the user in exactly the pool rooms they belong in."""
    wanted = set(await pool_rooms_for(db, user_id))
    for sid, _ in list(sio.manager.get_participants("/", user_room(user_id))):
        current = {room for room in sio.rooms(sid) if room == POOL_ROOM or room.startswith("pool:exp:")}
        for room in current - wanted:
            await sio.leave_room(sid, room)
        for room in wanted - current:
            await sio.enter_room(sid, room)


async def announce_rooms_changed(svc: Any, user_id: int) -> None:
    """After availability, expertise or approval changed: every process re-syncs that therapist's pool rooms."""
    bus: EventBus = svc.bus
    await bus.publish(ROOMS_CHANGED, {"user_id": user_id})
