"""The server's own receive-only audio peer for one member of one call (aiortc).

aiortc gathers all its candidates before answering and has no ICE restart: the peer offers host candidates only
(no STUN lookups, so the answer is immediate), and a member whose network changed simply gets a new peer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from core.errors import Invalid
from core.logging import get_logger
from media.consumers import FrameConsumer

log = get_logger("media")


def require_audio_only(sdp: str) -> None:
    """The server never receives video: an offer with a video section is refused."""
    for line in sdp.splitlines():
        if line.startswith("m=") and not line.startswith("m=audio"):
            raise Invalid("the server link carries audio only", code="audio_only")
    if "\nm=audio" not in "\n" + sdp:
        raise Invalid("the offer has no audio", code="audio_only")


class AudioPeer:
    """Answers a member's audio-only offer and hands every received frame to `consumer`."""

    def __init__(self, call_id: int, user_id: int, role: str, consumer: FrameConsumer,
                 on_state: Callable[[str], None] | None = None) -> None:
        self.call_id, self.user_id, self.role, self.consumer = call_id, user_id, role, consumer
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._reader: asyncio.Task[None] | None = None
        self._on_state = on_state
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def state(self) -> str:
        return self.pc.connectionState

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.create_task(self._read(track), name=f"audio-{self.call_id}-{self.user_id}")

    async def _on_connection_state(self) -> None:
        log.info("media.peer_state", call_id=self.call_id, role=self.role, state=self.pc.connectionState)
        if self._on_state is not None:
            self._on_state(self.pc.connectionState)

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.consumer.on_frame(frame)  # type: ignore[arg-type]

    async def answer(self, offer_sdp: str) -> str:
        require_audio_only(offer_sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except (ValueError, TypeError) as exc:
            raise Invalid("the offer could not be used", code="invalid_sdp") from exc
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.pc.close()
        self.consumer.close()
