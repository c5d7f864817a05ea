"""The floor: a bare python-socketio server with no application logic, to measure what Socket.IO itself costs.

`python -m benchmarks._floor --port P [--redis-url URL --channel NAME]` serves, on 127.0.0.1:P (aiohttp, uvloop,
the same Socket.IO options as the real server where they matter):
- `echo`: acks its payload unchanged;
- `broadcast`: emits `fanout` with its payload to every connected client except the sender, then acks `{"ok": true}`;
- GET /healthz: 200, so a starter can tell it is up.
With `--redis-url`, several processes share rooms through `AsyncRedisManager` (as the real server does).

`FloorCluster` starts `processes` of them on free loopback ports and stops them all (an async context manager).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from benchmarks._cluster import ROOT, ServerProcesses, free_port


def build_app(redis_url: str = "", channel: str = "floor") -> Any:
    import socketio
    from aiohttp import web

    manager = socketio.AsyncRedisManager(redis_url, channel=channel) if redis_url else None
    # The real server's ping settings (5 s / 10 s), so both carry the same background ping traffic.
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager, cors_allowed_origins="*",
                               ping_interval=5.0, ping_timeout=10.0, max_http_buffer_size=256 * 1024,
                               logger=False, engineio_logger=False)

    @sio.on("echo")
    async def echo(sid: str, data: Any = None) -> Any:
        return data

    @sio.on("broadcast")
    async def broadcast(sid: str, data: Any = None) -> Any:
        await sio.emit("fanout", data, skip_sid=sid)
        return {"ok": True}

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    sio.attach(app)

    async def close_sockets(app: web.Application) -> None:
        with contextlib.suppress(Exception):
            await sio.eio.disconnect()
            await sio.shutdown()

    app.on_shutdown.append(close_sockets)
    return app


def main(argv: list[str] | None = None) -> int:
    import uvloop
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--channel", default="floor")
    args = parser.parse_args(argv)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(build_app(args.redis_url, args.channel), host="127.0.0.1", port=args.port, loop=loop, access_log=None,
                print=lambda *_: None, shutdown_timeout=5, handle_signals=True)
    return 0


@dataclass
class FloorCluster(ServerProcesses):
    """`processes` floor servers on loopback; with more than one, `redis_url` must be given (rooms shared in Redis)."""

    processes: int
    redis_url: str = ""
    channel: str = "floor"
    workdir: Path | None = None
    urls: list[str] = field(default_factory=list)
    _procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    stop_timeout_s: float = 10.0

    async def start(self) -> "FloorCluster":
        if self.processes > 1 and not self.redis_url:
            raise ValueError("several floor processes need Redis")
        for n in range(self.processes):
            port = free_port()
            cmd = [sys.executable, "-m", "benchmarks._floor", "--port", str(port), "--channel", self.channel]
            if self.redis_url:
                cmd += ["--redis-url", self.redis_url]
            log: Any = asyncio.subprocess.DEVNULL
            if self.workdir is not None:
                self.workdir.mkdir(parents=True, exist_ok=True)
                log = open(self.workdir / f"floor-{n}.log", "wb")  # noqa: SIM115 - the child keeps it
            try:
                proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=log, stderr=log,
                                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
            finally:
                if log is not asyncio.subprocess.DEVNULL:
                    log.close()
            self._procs.append(proc)
            self.urls.append(f"http://127.0.0.1:{port}")
        await asyncio.gather(*(self._wait_healthy(url, proc) for url, proc in zip(self.urls, self._procs)))
        return self


if __name__ == "__main__":
    raise SystemExit(main())
