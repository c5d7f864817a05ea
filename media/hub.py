"""The audio peers of one server process, by (call, member): created on offer, replaced on a network change,
closed when the member leaves or the call ends. Which consumer gets the frames is the caller's choice."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from core.logging import get_logger
from media.consumers import FrameConsumer, LevelMeter
from media.peer import AudioPeer

log = get_logger("media")
#: (call_id, user_id, role, offset_ms in call time) -> the consumer of that member's frames
ConsumerFactory = Callable[[int, int, str, int], Awaitable[FrameConsumer]]


async def level_meter(call_id: int, user_id: int, role: str, offset_ms: int) -> FrameConsumer:
    return LevelMeter()


class MediaHub:
    def __init__(self, consumer_factory: ConsumerFactory | None = None) -> None:
        self.consumer_factory: ConsumerFactory = consumer_factory or level_meter
        self.peers: dict[tuple[int, int], AudioPeer] = {}

    async def offer(self, call_id: int, user_id: int, role: str, sdp: str, offset_ms: int = 0) -> str:
        """Answer a member's offer with a fresh peer, replacing the one they had."""
        await self.close_member(call_id, user_id)
        peer = AudioPeer(call_id, user_id, role, await self.consumer_factory(call_id, user_id, role, offset_ms))
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

    async def close_call(self, call_id: int) -> list[FrameConsumer]:
        """Close the call's peers in this process; returns their consumers (which may still be finishing)."""
        keys = [k for k in self.peers if k[0] == call_id]
        consumers = [self.peers[k].consumer for k in keys]
        for key in keys:
            await self.close_member(*key)
        return consumers

    def consumers(self, call_id: int) -> dict[str, FrameConsumer]:
        """The consumers of a call's peers in this process, by role."""
        return {peer.role: peer.consumer for (cid, _), peer in self.peers.items() if cid == call_id}

    async def close(self) -> None:
        await asyncio.gather(*(self.close_member(*k) for k in list(self.peers)), return_exceptions=True)
