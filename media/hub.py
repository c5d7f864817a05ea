"""The audio peers of one server process, by (call, member): created on offer, replaced on a network change,
closed when the member leaves or the call ends. Which consumer gets the frames is the caller's choice."""

from __future__ import annotations

import asyncio
from typing import Callable

from core.logging import get_logger
from media.consumers import FrameConsumer, LevelMeter
from media.peer import AudioPeer

log = get_logger("media")
ConsumerFactory = Callable[[int, int, str], FrameConsumer]


class MediaHub:
    def __init__(self, consumer_factory: ConsumerFactory | None = None) -> None:
        self.consumer_factory: ConsumerFactory = consumer_factory or (lambda call_id, user_id, role: LevelMeter())
        self.peers: dict[tuple[int, int], AudioPeer] = {}

    async def offer(self, call_id: int, user_id: int, role: str, sdp: str) -> str:
        """Answer a member's offer with a fresh peer, replacing the one they had."""
        await self.close_member(call_id, user_id)
        peer = AudioPeer(call_id, user_id, role, self.consumer_factory(call_id, user_id, role))
        self.peers[(call_id, user_id)] = peer
        try:
            return await peer.answer(sdp)
        except BaseException:
            self.peers.pop((call_id, user_id), None)
            await peer.close()
            raise

    async def close_member(self, call_id: int, user_id: int) -> None:
        peer = self.peers.pop((call_id, user_id), None)
        if peer is not None:
            await peer.close()

    async def close_call(self, call_id: int) -> None:
        for key in [k for k in self.peers if k[0] == call_id]:
            await self.close_member(*key)

    def consumers(self, call_id: int) -> dict[str, FrameConsumer]:
        """The consumers of a call's peers in this process, by role."""
        return {peer.role: peer.consumer for (cid, _), peer in self.peers.items() if cid == call_id}

    async def close(self) -> None:
        await asyncio.gather(*(self.close_member(*k) for k in list(self.peers)), return_exceptions=True)
