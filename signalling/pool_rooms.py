"""Socket.IO rooms of the pool: which dashboards a request reaches, and the broadcast port the pool domain uses."""

from __future__ import annotations

from typing import Any, Sequence

import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from core.bus import EventBus
from core.db import Database
from pool.eligibility import pool_expertise, slug
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

    async def place_dashboards(self, therapist_id: int, expertise: Sequence[str], *, in_pool: bool) -> None:
        # A connection in another process is moved through the Socket.IO manager's channel, the one every emit takes,
        # so it has left (or joined) before any event emitted after this reaches it.
        rooms = pool_rooms(expertise)
        remote = isinstance(self.sio.manager, AsyncPubSubManager)
        for sid in await self.presence.sids([therapist_id]):
            if self.sio.manager.is_connected(sid, "/"):
                await place_connection(self.sio, sid, rooms if in_pool else [])
            elif remote:
                for room in rooms:
                    await (self.sio.enter_room if in_pool else self.sio.leave_room)(sid, room)


def pool_rooms(expertise: Sequence[str]) -> list[str]:
    return [POOL_ROOM, *(expertise_room(e) for e in expertise)]


async def pool_rooms_for(db: Database, user_id: int) -> list[str]:
    """The pool rooms a therapist's connections belong in now: none unless approved, available and not busy."""
    async with db.session() as session:
        expertise = await pool_expertise(session, user_id)
    return [] if expertise is None else pool_rooms(expertise)


async def place_connection(sio: socketio.AsyncServer, sid: str, wanted: Sequence[str]) -> None:
    """Put one connection of this process in exactly the `wanted` pool rooms."""
    current = {room for room in sio.rooms(sid) if room == POOL_ROOM or room.startswith("pool:exp:")}
    for room in current - set(wanted):
        await sio.leave_room(sid, room)
    for room in set(wanted) - current:
        await sio.enter_room(sid, room)


async def sync_local_rooms(sio: socketio.AsyncServer, db: Database, user_id: int) -> None:
    """Put this process's connections of the user in exactly the pool rooms they belong in."""
    wanted = await pool_rooms_for(db, user_id)
    for sid, _ in list(sio.manager.get_participants("/", user_room(user_id))):
        await place_connection(sio, sid, wanted)


async def announce_rooms_changed(svc: Any, user_id: int) -> None:
    """After availability, expertise or approval changed: every process re-syncs that therapist's pool rooms."""
    bus: EventBus = svc.bus
    await bus.publish(ROOMS_CHANGED, {"user_id": user_id})
