"""The atomic first-accept claim, one module per backend: `memory` (one process) and `redis` (many processes)."""

from pool.claims.base import ClaimResult, ClaimStore
from pool.claims.memory import MemoryClaimStore

__all__ = ["ClaimResult", "ClaimStore", "MemoryClaimStore"]
