"""The Socket.IO server: token authentication at connect, the event registry with access levels, error acks.

Every event handler is registered through `EVENTS.on(name, access)`. Its ack is `{"ok": true, ...}` or
`{"ok": false, "error": {"code", "message"}}`. Unknown events get the `unknown_event` error ack.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import socketio

from accounts.principal import Principal
from accounts.signin import authenticate
from core.errors import AppError, Invalid, RateLimited
from core.logging import get_logger
from core.settings import Settings
from signalling.access import Access, check
from signalling.services import Services

log = get_logger("sockets")
MAX_MESSAGE_BYTES = 256 * 1024
EventHandler = Callable[[Services, Principal, str, dict[str, Any]], Awaitable[dict[str, Any] | None]]
ConnectionHook = Callable[[Services, Principal, str], Awaitable[None]]


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


@dataclass(frozen=True)
class RegisteredEvent:
    name: str
    access: Access
    handler: EventHandler


class EventRegistry:
    """Socket.IO events of the application, each with its access level."""

    def __init__(self) -> None:
        self.events: dict[str, RegisteredEvent] = {}
        self.connect_hooks: list[ConnectionHook] = []
        self.disconnect_hooks: list[ConnectionHook] = []

    def on_connect(self, hook: ConnectionHook) -> ConnectionHook:
        """Run after a connection is authenticated (e.g. join rooms, push a snapshot)."""
        self.connect_hooks.append(hook)
        return hook

    def on_disconnect(self, hook: ConnectionHook) -> ConnectionHook:
        self.disconnect_hooks.append(hook)
        return hook

    def on(self, name: str, access: Access) -> Callable[[EventHandler], EventHandler]:
        def decorate(handler: EventHandler) -> EventHandler:
            if name in self.events:
                raise ValueError(f"event {name} registered twice")
            self.events[name] = RegisteredEvent(name, access, handler)
            return handler

        return decorate


EVENTS = EventRegistry()


class Throttle:
    """A token bucket per connection, so one flooding connection is refused without slowing the others."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, sid: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(sid, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[sid] = (tokens, now)
            return False
        self._buckets[sid] = (tokens - 1.0, now)
        return True

    def forget(self, sid: str) -> None:
        self._buckets.pop(sid, None)


def create_socket_server(settings: Settings) -> socketio.AsyncServer:
    manager = None
    if settings.redis_url:
        manager = socketio.AsyncRedisManager(settings.redis_url, channel=f"{settings.redis_prefix}:socketio")
    return socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=list(settings.effective_allowed_origins),
        ping_interval=settings.socket_ping_interval_s,
        ping_timeout=settings.socket_ping_timeout_s,
        max_http_buffer_size=MAX_MESSAGE_BYTES,
        logger=False,
        engineio_logger=False,
    )


def error_ack(err: AppError) -> dict[str, Any]:
    return {"ok": False, "error": err.to_dict()}


async def principal_of(sio: socketio.AsyncServer, sid: str) -> Principal | None:
    try:
        session = await sio.get_session(sid)
    except KeyError:
        return None
    return session.get("principal")


def attach_socket_handlers(svc: Services, registry: EventRegistry = EVENTS) -> None:
    """Wire connect/disconnect, every registered event and the unknown-event catch-all to `svc.sio`."""
    sio = svc.sio
    throttle = Throttle(svc.settings.socket_events_per_s, svc.settings.socket_event_burst)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            principal = await authenticate(svc.accounts, token)
        except AppError as err:
            svc.metrics.socket_events.labels("connect", err.code).inc()
            raise socketio.exceptions.ConnectionRefusedError(err.message, {"code": err.code}) from None
        await sio.save_session(sid, {"principal": principal})
        await sio.enter_room(sid, user_room(principal.user_id))
        svc.metrics.socket_connections.inc()
        for hook in registry.connect_hooks:
            await hook(svc, principal, sid)
        log.info("socket.connected", user_id=principal.user_id, role=principal.role.value)

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        throttle.forget(sid)
        principal = await principal_of(sio, sid)
        if principal is not None:
            svc.metrics.socket_connections.dec()
            for hook in registry.disconnect_hooks:
                try:
                    await hook(svc, principal, sid)
                except Exception:  # noqa: BLE001 - every hook runs even if one fails
                    log.exception("socket.disconnect_hook_failed")
            log.info("socket.disconnected", user_id=principal.user_id, why=str(reason))

    def make_handler(event: RegisteredEvent) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def handle(sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
            started = time.perf_counter()
            result = "ok"
            try:
                principal = await principal_of(sio, sid)
                if principal is None:
                    raise AppError("sign in first", code="unauthorized")
                if not throttle.allow(sid):
                    raise RateLimited("too many messages; slow down", retry_after=1.0)
                check(event.access, principal)
                if data is None:
                    data = {}
                if not isinstance(data, dict) or extra:
                    raise Invalid("the payload must be one JSON object", code="invalid_payload")
                reply = await event.handler(svc, principal, sid, data)
                return {"ok": True, **(reply or {})}
            except AppError as err:
                result = err.code
                if err.status >= 500:  # our failure, not the client's (a DecryptionError: a key missing, a tampered row)
                    log.error("socket.server_error", socket_event=event.name, code=err.code, error=type(err).__name__)
                return error_ack(err)
            except Exception:
                result = "internal"
                log.exception("socket.handler_failed", socket_event=event.name)
                return {"ok": False, "error": {"code": "internal", "message": "something went wrong on our side"}}
            finally:
                svc.metrics.socket_events.labels(event.name, result).inc()
                log.debug("socket.event", socket_event=event.name, result=result,
                          ms=round((time.perf_counter() - started) * 1000, 2))

        return handle

    for event in registry.events.values():
        sio.on(event.name, make_handler(event))

    @sio.on("*")
    async def unknown(event: str, sid: str, *args: Any) -> dict[str, Any]:
        if not throttle.allow(sid):
            return error_ack(RateLimited("too many messages; slow down", retry_after=1.0))
        svc.metrics.socket_events.labels("unknown", "unknown_event").inc()
        return {"ok": False, "error": {"code": "unknown_event", "message": "there is no such event"}}

    async def on_user_signed_out(payload: dict[str, Any]) -> None:
        token_id = payload.get("token_id")
        for sid, _ in list(sio.manager.get_participants("/", user_room(int(payload["user_id"])))):
            principal = await principal_of(sio, sid)
            if token_id is None or (principal is not None and principal.token_id == token_id):
                await sio.disconnect(sid, ignore_queue=True)

    svc.bus.subscribe("user.signed_out", on_user_signed_out)


async def disconnect_user(svc: Services, user_id: int, token_id: int | None = None) -> None:
    """Close the user's sockets opened with `token_id` (all of them when None), in every server process."""
    await svc.bus.publish("user.signed_out", {"user_id": user_id, "token_id": token_id})
