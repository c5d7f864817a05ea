"""Start real server processes on loopback for multi-process tests and benchmarks (shared by both).

Every process gets the same secrets, database and Redis prefix, a free port, and its own log file; the schema is
migrated once before they start. `Cluster` is an async context manager that stops every process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
#: What every simulated client finds in its wallet (through the ledger): calls are charged per minute and asking for a
#: session needs a minimum balance. £1,000 is over sixteen hours at the benchmarks' £1 a minute.
BENCH_DEPOSIT_PENCE = 100_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcesses:
    """What every group of server processes started here shares: health waits, pids, SIGTERM then kill, `async with`."""

    urls: list[str]
    _procs: list[asyncio.subprocess.Process]
    stop_timeout_s: float = 15.0

    async def start(self) -> "ServerProcesses":
        raise NotImplementedError

    async def _wait_healthy(self, url: str, proc: asyncio.subprocess.Process, timeout: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while asyncio.get_running_loop().time() < deadline:
                if proc.returncode is not None:
                    raise RuntimeError(f"server {url} exited with {proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server {url} did not become healthy in {timeout} s")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    async def stop(self) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._procs.clear()

    async def __aenter__(self) -> Any:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


@dataclass
class Cluster(ServerProcesses):
    """`processes` server processes sharing `database_url` and `redis_url` (Redis is needed for more than one)."""

    processes: int
    database_url: str
    redis_url: str
    redis_prefix: str
    workdir: Path
    secret_key: str
    encryption_keys: str
    extra_env: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)
    _procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THERAPY_")}
        env.update({
            "THERAPY_ENV": "test", "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "THERAPY_REDIS_PREFIX": self.redis_prefix, "THERAPY_SECRET_KEY": self.secret_key,
            "THERAPY_ENCRYPTION_KEYS": self.encryption_keys, "THERAPY_DATA_DIR": str(self.workdir / "data"),
            "THERAPY_MIGRATE_ON_START": "false", "THERAPY_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1",
            "THERAPY_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
            # REDIS_URL alone would send utterances to Redis for transcription.worker processes, which none runs here
            "THERAPY_TRANSCRIPTION_BACKEND": "threads",
        })
        env.update(self.extra_env)
        return env

    async def migrate(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "signalling", "migrate", cwd=ROOT, env=self.env(0),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        if proc.returncode != 0:
            raise RuntimeError(f"migration failed: {err.decode()[-2000:]}")

    async def start(self) -> "Cluster":
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.migrate()
        for n in range(self.processes):
            port = free_port()
            log = open(self.workdir / f"server-{n}.log", "wb")  # noqa: SIM115 - closed with the process
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "signalling", "--host", "127.0.0.1", "--port", str(port), cwd=ROOT,
                env=self.env(port), stdout=log, stderr=log,
            )
            self._procs.append(proc)
            self.urls.append(f"http://127.0.0.1:{port}")
        await asyncio.gather(*(self._wait_healthy(url, proc) for url, proc in zip(self.urls, self._procs)))
        return self
