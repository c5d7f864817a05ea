"""Call events: join and rejoin, WebRTC signalling relay between the two members, chat, notes, hang-up, and the
audio-only link to the server's own peer."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from accounts.models import User
from accounts.principal import Principal
from billing import metering
from calls import chat, membership, notes
from calls.ice import ice_config
from calls.membership import call_id_of, load_call
from calls.models import Call
from calls.opening import ended_by_role
from calls.policy import require_member, require_open
from calls.signals import keep_candidate, validate_sdp, validate_signal
from core.errors import Forbidden
from core.logging import get_logger
from core.tasks import cancel_and_wait
from core.validation import boolean, only_fields
from pool.offers import call_ended
from signalling.access import Access
from signalling.services import Services
from signalling.sockets import EVENTS
from signalling.transcripts import delete_expired_recordings, recover_interrupted

log = get_logger("calls")
#: Consent withdrawn: every process closes the call's audio links it holds.
MEDIA_STOP = "call.media_stop"
#: The call ended: every process closes the call's audio links it holds, flushes their audio and finishes the transcript.
MEDIA_FINISH = "call.media_finish"


def call_room(call_id: int) -> str:
    return f"call:{call_id}"


@EVENTS.on("call.join", Access.user)
async def join(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """Take your place in the call (first time or after a drop); returns everything needed to (re)build the screen."""
    only_fields(data, {"call_id"})
    joined = await membership.join(svc.calls, principal, call_id_of(data), sid)
    call, member, other = joined.call, joined.member, joined.other
    if joined.replaced_sid:
        await svc.sio.emit("call.replaced", {"call_id": call.id}, to=joined.replaced_sid)
        with contextlib.suppress(Exception):
            await svc.sio.leave_room(joined.replaced_sid, call_room(call.id))
    await svc.sio.enter_room(sid, call_room(call.id))
    if other.sid is not None:
        # to the connection the locked row names: the other member may have joined a moment ago and not yet be in
        # the room, and told no one, because our place was empty when they looked
        await svc.sio.emit("call.peer_joined", {"call_id": call.id, "role": member.role, "rejoined": joined.rejoined,
                                                "joins": member.joins}, to=other.sid)
    reply: dict[str, Any] = {
        "call": {"id": call.id, "kind": call.kind.value, "recording_consent": call.recording_consent,
                 "started_at": call.started_at.isoformat() if call.started_at else None},
        "role": member.role,
        "with": await _other_member(svc, other.user_id),
        "peer_present": other.sid is not None,
        "polite": member.role == "client",
        "chat": await chat.history(svc.calls, call.id),
        **ice_config(svc.settings, principal.user_id, call.id, svc.clock.now()),
    }
    if member.role == "therapist":
        reply["notes"] = await notes.read(svc.calls, principal, call.id)
    await metering.member_joined(svc.billing, call.id)
    return reply


async def _other_member(svc: Services, user_id: int) -> dict[str, Any]:
    async with svc.db.session() as session:
        user = await session.get(User, user_id)
    return {"id": user_id, "display_name": user.display_name if user else ""}


async def _member_in_open_call(svc: Services, principal: Principal, data: dict[str, Any]) -> tuple[Call, Any]:
    call = await load_call(svc.calls, call_id_of(data))
    member = require_member(call, principal)
    assert call is not None
    require_open(call)
    return call, member


class SignalOrder:
    """One lock per connection, so each sender's signals are relayed in the order they were sent. python-socketio runs
    every event in its own task, started in arrival order; the relay reads the database before it emits, so without
    the lock a candidate could overtake its offer. The lock is taken before the handler's first wait."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def of(self, sid: str) -> asyncio.Lock:
        return self._locks.setdefault(sid, asyncio.Lock())

    def forget(self, sid: str) -> None:
        self._locks.pop(sid, None)

    def __len__(self) -> int:
        return len(self._locks)


SIGNAL_ORDER = SignalOrder()


@EVENTS.on("call.signal", Access.user)
async def signal(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """Relay an offer, answer or ICE candidate to the other member's connection in this call, and nobody else."""
    clean = validate_signal(data, svc.settings.max_sdp_bytes)
    async with SIGNAL_ORDER.of(sid):
        call, member = await _member_in_open_call(svc, principal, data)
        if member.sid != sid:
            raise Forbidden("join the call from this window first", code="not_joined")
        if not keep_candidate(clean, svc.settings.ice_loopback_only):
            return {"delivered": False, "dropped": True}
        other = call.other_member(principal.user_id)
        if other is None or other.sid is None:
            return {"delivered": False}
        await svc.sio.emit("call.signal", {"call_id": call.id, "from_role": member.role, **clean}, to=other.sid)
        return {"delivered": True}


@EVENTS.on("call.media_state", Access.user)
async def media_state(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """The member's browser reports its peer connection to the other member (connected or not); per-minute charging
    runs only while both report connected."""
    only_fields(data, {"call_id", "connected"})
    connected = boolean(data, "connected")
    call = await membership.report_media(svc.calls, principal, call_id_of(data), sid, connected)
    await metering.media_changed(svc.billing, call.id)
    return {"call_id": call.id, "connected": connected}


@EVENTS.on("call.chat", Access.user)
async def send_chat(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    message, new = await chat.send(svc.calls, principal, data)
    if new:
        await svc.sio.emit("call.chat", {"message": message}, room=call_room(message["call_id"]))
    return {"message": message}


@EVENTS.on("call.notes.save", Access.therapist)
async def save_notes(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    return await notes.save(svc.calls, principal, data)


@EVENTS.on("call.notes.get", Access.therapist)
async def get_notes(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    only_fields(data, {"call_id"})
    return await notes.read(svc.calls, principal, call_id_of(data))


@EVENTS.on("call.hangup", Access.user)
async def hang_up(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    only_fields(data, {"call_id"})
    call = await membership.hang_up(svc.calls, principal, call_id_of(data))
    await finish_call(svc, call)
    return {"call_id": call.id, "ended_at": call.ended_at.isoformat() if call.ended_at else None}


@EVENTS.on("call.media.offer", Access.user)
async def media_offer(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """The member's audio-only link to the server (only in calls with recording consent); returns the answer."""
    only_fields(data, {"call_id", "sdp"})
    call, member = await _member_in_open_call(svc, principal, data)
    if member.sid != sid:
        raise Forbidden("join the call from this window first", code="not_joined")
    if not call.recording_consent:
        raise Forbidden("this call is not recorded; no audio goes to the server", code="no_consent")
    sdp = validate_sdp(data, svc.settings.max_sdp_bytes)
    since = call.started_at or call.created_at
    offset_ms = max(0, int((svc.clock.now() - since).total_seconds() * 1000))
    answer = await svc.media.offer(call.id, principal.user_id, member.role, sdp, offset_ms)
    return {"sdp": answer, "type": "answer"}


@EVENTS.on("call.recording.withdraw", Access.user)
async def withdraw_recording(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """Either member stops recording and transcription for both, from now on."""
    only_fields(data, {"call_id"})
    call, member = await membership.withdraw_recording(svc.calls, principal, call_id_of(data))
    await svc.bus.publish(MEDIA_STOP, {"call_id": call.id})
    payload = {"call_id": call.id, "active": False, "withdrawn_by": member.role}
    await svc.sio.emit("call.recording", payload, room=call_room(call.id))
    for m in call.members:
        await svc.sio.emit("call.recording", payload, to=f"user:{m.user_id}")
    return {"recording": False}


@EVENTS.on("call.media.close", Access.user)
async def media_close(svc: Services, principal: Principal, sid: str, data: dict[str, Any]) -> dict[str, Any]:
    only_fields(data, {"call_id"})
    call = await load_call(svc.calls, call_id_of(data))
    require_member(call, principal)
    await svc.media.close_member(call_id_of(data), principal.user_id)
    return {}


async def finish_call(svc: Services, call: Call) -> None:
    """After a call ended (hang-up or grace period over): tell both, close media, free the therapist."""
    room = call_room(call.id)
    payload = {"call_id": call.id, "reason": call.end_reason, "ended_by": ended_by_role(call),
               "ended_at": call.ended_at.isoformat() if call.ended_at else None}
    for member in call.members:
        await svc.sio.emit("call.ended", payload, to=f"user:{member.user_id}")
    await svc.sio.close_room(room)
    await metering.call_finished(svc.billing, call.id)
    await svc.bus.publish(MEDIA_FINISH, {"call_id": call.id})  # the members' audio links may be in other processes
    await call_ended(svc.pool, call.therapist_id, call.id)


@EVENTS.on_disconnect
async def member_dropped(svc: Services, principal: Principal, sid: str) -> None:
    SIGNAL_ORDER.forget(sid)
    if svc.stopping:
        return
    for call, member in await membership.connection_lost(svc.calls, principal.user_id, sid):
        # Tell the other member first: a reloading member is back within a second, and a `call.peer_left` that
        # reached the other browser after the rejoin's offer would tear down the new connection.
        await svc.sio.emit("call.peer_left", {"call_id": call.id, "role": member.role, "joins": member.joins,
                                              "grace_s": svc.settings.call_rejoin_grace_s}, room=call_room(call.id))
        await metering.member_left(svc.billing, call.id)
        await svc.media.close_member(call.id, principal.user_id)


async def sweep_calls(svc: Services) -> int:
    """End calls whose member stayed away past the grace period, or never came within the join timeout; returns how
    many ended."""
    ended = 0
    for due in await membership.overdue(svc.calls):
        call = await membership.end_call(svc.calls, due.call_id, ended_by=due.member_id, reason=due.reason)
        if call is not None:
            await finish_call(svc, call)
            ended += 1
    return ended


class CallSweeper:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        passes = 0
        while True:
            await asyncio.sleep(self.svc.settings.call_sweep_interval_s)
            try:
                await sweep_calls(self.svc)
            except Exception:  # noqa: BLE001 - keep sweeping
                log.exception("calls.sweep_failed")
            if passes % 30 == 0:  # now and then: interrupted transcripts and expired recordings, each on its own
                for step in (recover_interrupted, delete_expired_recordings):
                    try:
                        await step(self.svc)
                    except Exception:  # noqa: BLE001
                        log.exception("calls.sweep_failed", step=step.__name__)
            passes += 1

    def start(self) -> None:
        self._task = self._task or asyncio.create_task(self._run(), name="call-sweeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


def subscribe_media_bus(svc: Services) -> None:
    """Consent withdrawn, or the call ended: every process closes the call's audio links it holds."""

    async def media_stop(payload: dict[str, Any]) -> None:
        await svc.call_media.stop_call(int(payload["call_id"]))

    async def media_finish(payload: dict[str, Any]) -> None:
        svc.call_media.finish_call(int(payload["call_id"]))

    svc.bus.subscribe(MEDIA_STOP, media_stop)
    svc.bus.subscribe(MEDIA_FINISH, media_finish)
