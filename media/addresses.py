"""Which local addresses the server's WebRTC peers offer as ICE host candidates.

aioice always leaves 127.0.0.1 out and offers every other interface. `use_host_addresses` replaces that choice
process-wide: tests and benchmarks pin it to loopback; a deployment can pin it to its public interface.
"""

from __future__ import annotations

from typing import Sequence

import aioice.ice

_original = aioice.ice.get_host_addresses


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Make every aiortc peer of this process gather exactly `addresses` (empty: aioice's own choice)."""
    if not addresses:
        aioice.ice.get_host_addresses = _original
        return
    chosen = list(addresses)

    def pinned(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = pinned
