"""Rate limiting behind one interface, one module per backend (`memory`, `redis`), as python-socketio does with managers."""

from core.ratelimit.base import RateLimiter
from core.ratelimit.memory import MemoryRateLimiter

__all__ = ["RateLimiter", "MemoryRateLimiter"]
