"""Who is online (has at least one open connection in any server process): `memory` and `redis` backends."""

from pool.presence.base import PresenceStore
from pool.presence.memory import MemoryPresence

__all__ = ["PresenceStore", "MemoryPresence"]
