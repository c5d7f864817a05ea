"""The command line: `python -m signalling` serves; `migrate`, `downgrade` and `create-admin` manage the database."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import getpass
import os
import socket
import sys
from typing import Any, Sequence

from core.errors import AppError, ConfigError
from core.logging import configure_logging, get_logger
from core.settings import Settings, load_settings, with_generated_secrets


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m signalling", description=__doc__)
    parser.add_argument("--settings", help="TOML settings file (default: $THERAPY_SETTINGS_FILE)")
    parser.add_argument("--env", choices=["development", "test", "production"], help="override THERAPY_ENV")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks a free one)")
    parser.add_argument("--data-dir", help="data folder for the SQLite database and secrets (default ./data)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the server (the default)")
    up = sub.add_parser("migrate", help="upgrade the database schema")
    up.add_argument("--revision", default="head")
    down = sub.add_parser("downgrade", help="downgrade the database schema to a revision ('base' for empty)")
    down.add_argument("revision")
    admin = sub.add_parser("create-admin", help="create an admin account (password read from $ADMIN_PASSWORD or a prompt)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Administrator")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"env": args.env, "host": args.host, "port": args.port, "data_dir": args.data_dir}
    return load_settings(settings_file=args.settings, overrides=overrides)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (port 0: a free one, chosen by the system)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(settings: Settings) -> None:
    import uvloop
    from aiohttp import web

    from signalling.app import create_app
    from signalling.eventloop import freeze_heap, tune_gc

    log = get_logger("cli")
    sock = None
    if settings.port == 0:
        # Bind first, so the public URL and the allowed origins derived from the port name the real one.
        sock = _bind(settings.host, 0)
        settings = dataclasses.replace(settings, port=sock.getsockname()[1])
    log.info("server.config", **{k: v for k, v in settings.redacted().items() if k in ("env", "host", "port", "data_dir")})
    tune_gc(settings)   # process-wide, so here rather than in the app (tests build many apps in one process)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings)

    async def settle_heap(_: web.Application) -> None:   # after the app's own start-up (appended after it)
        frozen = freeze_heap() if settings.gc_freeze else 0
        log.info("server.gc", thresholds=list(gc.get_threshold()), frozen_objects=frozen)

    app.on_startup.append(settle_heap)

    where: dict[str, Any] = {"sock": sock} if sock is not None else {"host": settings.host, "port": settings.port}
    web.run_app(
        app, **where, loop=loop, access_log=None, print=lambda message: print(message, flush=True),
        shutdown_timeout=settings.shutdown_timeout_s, handle_signals=True,
    )


async def _with_db(settings: Settings, action: str, revision: str) -> None:
    from core import migrate
    from core.db import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    try:
        if action == "upgrade":
            await migrate.upgrade(db, revision)
        else:
            await migrate.downgrade(db, revision)
        print(f"schema at {await migrate.current_revision(db) or 'base'}")
    finally:
        await db.dispose()


async def _create_admin(settings: Settings, email: str, name: str, password: str) -> None:
    from accounts.context import AccountsContext
    from accounts.registration import create_admin
    from core import migrate
    from core.clock import SystemClock
    from core.crypto import Keyring
    from core.db import Database
    from core.ratelimit import MemoryRateLimiter

    settings = with_generated_secrets(settings)
    db = Database(settings.effective_database_url)
    try:
        if settings.migrate_on_start:
            await migrate.upgrade(db)
        ctx = AccountsContext(db=db, keyring=Keyring.from_spec(settings.encryption_keys), clock=SystemClock(),
                              settings=settings, limiter=MemoryRateLimiter())
        user = await create_admin(ctx, email, password, name)
        print(f"admin account {user.id} created")
    finally:
        await db.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json)
    command = args.command or "serve"
    try:
        if command == "serve":
            serve(settings)
        elif command == "migrate":
            asyncio.run(_with_db(settings, "upgrade", args.revision))
        elif command == "downgrade":
            asyncio.run(_with_db(settings, "downgrade", args.revision))
        elif command == "create-admin":
            password = os.environ.get("ADMIN_PASSWORD") or getpass.getpass("Password for the new admin: ")
            asyncio.run(_create_admin(settings, args.email, args.name, password))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    return 0
