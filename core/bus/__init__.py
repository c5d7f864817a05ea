"""Cross-process events behind one interface: `memory` for one process, `redis` (pub/sub) for many.

Used for things every server process must act on, e.g. "user 42 signed out: close their sockets".
"""

from core.bus.base import EventBus, Handler
from core.bus.memory import MemoryEventBus

__all__ = ["EventBus", "Handler", "MemoryEventBus"]
