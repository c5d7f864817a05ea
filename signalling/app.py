"""The aiohttp application factory: builds the services of one process and wires HTTP, Socket.IO and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from accounts.context import AccountsContext
from core import migrate
from core.bus import MemoryEventBus
from core.bus.redis import RedisEventBus
from core.clock import Clock, SystemClock
from core.crypto import Keyring
from core.db import Database
from core.logging import get_logger
from core.ratelimit import MemoryRateLimiter
from core.ratelimit.redis import RedisRateLimiter
from core.settings import Settings, with_generated_secrets
from messaging.dispatcher import OutboxDispatcher
from messaging.outbox import Channel
from messaging.senders import LogSender, Sender, SmtpSender
from signalling import events  # noqa: F401 - registers the Socket.IO events
from pool.claims import MemoryClaimStore
from pool.claims.redis import RedisClaimStore
from pool.context import PoolContext
from pool.notifier import OutboxSmsNotifier
from pool.presence import MemoryPresence
from pool.presence.redis import RedisPresence
from pool.sweeper import Sweeper
from calls.context import CallsContext
from media.addresses import use_host_addresses
from media.hub import MediaHub
from signalling.events.calls import CallSweeper, subscribe_media_bus
from signalling.transcripts import CallMedia
from transcription.backends import ThreadedBackend, TranscriptionBackend
from transcription.decoder import Decoder
from transcription.model import ModelSpec, load_model
from transcription.options import DecodeOptions
from pool.states import PoolMemory
from signalling.events.pool import REQUEST_STATE, subscribe_bus
from signalling.http import SERVICES, content_security_policy, core_middleware
from signalling.pool_rooms import SocketPoolBroadcast
from signalling.eventloop import GcWatch, LoopLagWatch, StallSampler, debug_slow_callbacks
from signalling.metrics import Metrics
from signalling.routes import ROUTES
from signalling.routes.billing import billing_services
from signalling.services import Services
from signalling.sockets import attach_socket_handlers, create_socket_server

log = get_logger("app")
STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": content_security_policy(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}


def default_senders(settings: Settings) -> dict[Channel, Sender]:
    email: Sender = LogSender()
    if settings.email_backend == "smtp":
        email = SmtpSender(
            settings.smtp_host, settings.smtp_port, settings.email_from, username=settings.smtp_username,
            password=settings.smtp_password, starttls=settings.smtp_starttls,
        )
    return {Channel.email: email, Channel.sms: LogSender()}


def build_services(settings: Settings, *, clock: Clock | None = None, senders: dict[Channel, Sender] | None = None) -> Services:
    """Every long-lived object of one server process, chosen by settings (embedded or Redis/PostgreSQL)."""
    settings = with_generated_secrets(settings)
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    keyring = Keyring.from_spec(settings.encryption_keys)
    redis_client = aioredis.from_url(settings.redis_url) if settings.redis_url else None
    if redis_client is not None:
        limiter = RedisRateLimiter(redis_client, settings.redis_prefix)
        bus = RedisEventBus(redis_client, settings.redis_prefix)
        claims = RedisClaimStore(redis_client, settings.redis_prefix)
        presence = RedisPresence(redis_client, settings.redis_prefix)
    else:
        limiter, bus = MemoryRateLimiter(clock), MemoryEventBus()
        claims, presence = MemoryClaimStore(clock), MemoryPresence()
    metrics = Metrics()
    dispatcher = OutboxDispatcher(db, keyring, senders or default_senders(settings), clock, settings.outbox_poll_s)
    accounts = AccountsContext(db=db, keyring=keyring, clock=clock, settings=settings, limiter=limiter,
                               outbox_kick=dispatcher.kick)
    sio = create_socket_server(settings)
    notifier = OutboxSmsNotifier(db, keyring, clock, limiter, throttle_s=settings.sms_throttle_s,
                                 dashboard_url=settings.effective_public_url + "/", kick=dispatcher.kick)
    memory = PoolMemory(publish=lambda state: bus.publish(REQUEST_STATE, state))
    pool = PoolContext(db=db, keyring=keyring, clock=clock, settings=settings, limiter=limiter, claims=claims,
                       presence=presence, broadcast=SocketPoolBroadcast(sio, presence), notifier=notifier, memory=memory)
    calls = CallsContext(db=db, keyring=keyring, clock=clock, settings=settings, limiter=limiter, presence=presence)
    use_host_addresses(settings.media_host_addresses)
    svc = Services(
        settings=settings, clock=clock, db=db, keyring=keyring, limiter=limiter, bus=bus, metrics=metrics,
        dispatcher=dispatcher, accounts=accounts, sio=sio, pool=pool, sweeper=Sweeper(pool, settings.pool_sweep_interval_s),
        calls=calls, media=MediaHub(), transcriber=build_transcriber(settings, clock), redis=redis_client,
    )
    svc.call_media = CallMedia(svc)
    svc.media.consumer_factory = svc.call_media.consumer
    svc.transcriber.set_sink(svc.call_media.deliver)
    svc.background.append(CallSweeper(svc))
    svc.billing, billing_jobs = billing_services(svc)
    svc.background.extend(billing_jobs)
    metrics.watch(svc)
    return svc


def build_transcriber(settings: Settings, clock: Clock | None = None) -> TranscriptionBackend:
    """Worker threads in this process (embedded), or a Redis Stream consumed by `python -m transcription.worker`
    processes (this process then loads no model): `transcription_backend` "threads" or "redis", or "auto" (the
    default): "redis" when REDIS_URL is set."""
    backend = settings.transcription_backend
    if backend == "auto":
        backend = "redis" if settings.redis_url else "threads"
    if backend == "redis":
        from core.errors import ConfigError
        from transcription.backends.redis import RedisBackend

        if not settings.redis_url:
            raise ConfigError("THERAPY_TRANSCRIPTION_BACKEND=redis needs REDIS_URL")
        return RedisBackend.from_url(settings.redis_url, settings.redis_prefix,
                                     stream_max=settings.transcription_stream_max,
                                     claim_idle_ms=settings.transcription_claim_idle_ms,
                                     clock=(clock or SystemClock()).monotonic)
    spec = ModelSpec(path=settings.whisper_model, device=settings.whisper_device, compute_type=settings.whisper_compute_type,
                     cpu_threads=settings.whisper_cpu_threads, workers=settings.transcription_workers)
    options = DecodeOptions(beam_size=settings.whisper_beam_size)
    return ThreadedBackend(lambda: Decoder(load_model(spec), options), workers=settings.transcription_workers,
                           max_batch=settings.transcription_max_batch, queue_max=settings.transcription_queue_max)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")  # revalidate, so a release never mixes old and new modules


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(settings: Settings, *, clock: Clock | None = None, senders: dict[Channel, Sender] | None = None) -> web.Application:
    """The whole server as an aiohttp application; run it with `web.run_app` or an `AppRunner`."""
    svc = build_services(settings, clock=clock, senders=senders)
    app = web.Application(middlewares=[core_middleware], client_max_size=svc.settings.max_picture_bytes + 65536)
    app[SERVICES] = svc
    for table in ROUTES:
        app.add_routes(table)
    app.router.add_get("/", _index)
    if STATIC_DIR.is_dir():
        app.router.add_static("/static", STATIC_DIR, follow_symlinks=False)
    svc.sio.attach(app)
    attach_socket_handlers(svc)
    subscribe_bus(svc)
    subscribe_media_bus(svc)
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _close_sockets(app: web.Application) -> None:
    """Close every Socket.IO connection first, so shutdown does not wait on open websockets. Clients reconnect
    (to another process behind the load balancer); their offers and calls are not ended for it."""
    svc = app[SERVICES]
    svc.stopping = True
    try:
        if svc.sio.eio.sockets:
            await asyncio.wait_for(svc.sio.eio.disconnect(), 3)
        await svc.sio.shutdown()
    except (Exception, asyncio.TimeoutError):  # noqa: BLE001 - shutting down regardless
        log.warning("server.socket_close_incomplete")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    if svc.settings.migrate_on_start:
        await migrate.upgrade(svc.db)
    await svc.bus.start()
    svc.dispatcher.start()
    svc.sweeper.start()
    await svc.transcriber.start()
    for job in svc.background:
        job.start()
    presence_task = asyncio.create_task(_refresh_presence(svc), name="presence-refresh")
    # what holds the event loop (signalling.eventloop): always measured; the diagnosis tools when set
    gc_watch, lag_watch = GcWatch(svc.metrics), LoopLagWatch(svc.metrics)
    gc_watch.start()
    lag_watch.start()
    stalls = None
    if svc.settings.slow_callback_s > 0:
        debug_slow_callbacks(asyncio.get_running_loop(), svc.settings.slow_callback_s)
    if svc.settings.stall_stacks_s > 0:
        stalls = StallSampler(asyncio.get_running_loop(), svc.settings.stall_stacks_s)
        stalls.start()
    log.info("server.started", env=svc.settings.env, database=svc.db.dialect, redis=bool(svc.redis))
    yield
    log.info("server.stopping")
    gc_watch.stop()
    await lag_watch.stop()
    if stalls is not None:
        stalls.stop()
    presence_task.cancel()
    await svc.sweeper.stop()
    for job in svc.background:
        await job.stop()
    await svc.media.close()
    await svc.call_media.shutdown(svc.settings.transcription_shutdown_s)  # the last utterances, stored (bounded)
    await svc.transcriber.stop()
    await svc.dispatcher.stop()
    await svc.bus.stop()
    await svc.db.dispose()
    if svc.redis is not None:
        await svc.redis.aclose()
    log.info("server.stopped")


async def _refresh_presence(svc: Services) -> None:
    while True:
        await asyncio.sleep(10)
        with contextlib.suppress(Exception):
            await svc.pool.presence.refresh()
