"""The real server process, started as the README starts it: health, JSON logs without secrets, graceful SIGTERM,
the production-secrets check, migrations and `create-admin` from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from conftest import CANARY, ROOT, Canary, free_port

pytestmark = pytest.mark.slow

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
PASSWORD = f"pw-{CANARY}-long-enough"


def server_env(**extra: str) -> dict[str, str]:
    """This process's environment without any server settings of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THERAPY_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(extra)
    return env


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    stdout: Path
    stderr: Path
    url: str = ""

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


async def run_cli(tmp_path: Path, *args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run `python -m signalling ARGS` to completion; returns the exit code and stdout + stderr."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "signalling", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@contextlib.asynccontextmanager
async def started_server(tmp_path: Path, data_dir: Path, env: dict[str, str]) -> AsyncIterator[Process]:
    """The server in a child process on a free port; killed on the way out if the test has not stopped it.

    A port found free can be taken by another process before the server binds it; then it starts again on another."""
    for _ in range(3):
        port = free_port()
        stdout, stderr = tmp_path / "server.stdout", tmp_path / "server.stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                PYTHON, "-m", "signalling", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
                cwd=ROOT, env=env, stdout=out, stderr=err,
            )
        server = Process(proc, stdout, stderr, f"http://127.0.0.1:{port}")
        try:
            if await wait_healthy(server):
                yield server
                return
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    pytest.fail("the server could not bind a free port in 3 attempts")


async def wait_healthy(server: Process) -> bool:
    """True once /healthz answers 200; False if the port was taken meanwhile; fails the test otherwise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if server.proc.returncode is not None:
                if "address already in use" in server.output():
                    return False
                pytest.fail(f"the server exited with {server.proc.returncode} while starting:\n{server.output()[-3000:]}")
            # the banner comes once the port is bound: only then is whatever answers on it this server
            if "Running on" in server.stdout.read_text(errors="replace"):
                try:
                    async with http.get(f"{server.url}/healthz") as resp:
                        if resp.status == 200:
                            assert await resp.json() == {"status": "ok", "database": "ok"}
                            return True
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"/healthz did not answer 200 within {START_TIMEOUT_S}s:\n{server.output()[-3000:]}")
            await asyncio.sleep(0.1)


async def stop(server: Process) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(server.proc.wait(), STOP_TIMEOUT_S)
    except asyncio.TimeoutError:
        pytest.fail(f"the server did not exit within {STOP_TIMEOUT_S}s of SIGTERM")


async def test_server_serves_logs_json_and_stops_cleanly_on_sigterm(tmp_path: Path, canary: Canary) -> None:
    async with started_server(tmp_path, tmp_path / "data", server_env(THERAPY_ENV="development")) as server:
        body = {"email": "casey@example.org", "password": PASSWORD, "display_name": canary.text("Casey "),
                "date_of_birth": "1990-05-17"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
                data = await resp.json()
                assert resp.status == 201, data
            token = data["token"]
            async with http.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["display_name"] == body["display_name"]
        assert await stop(server) == 0

    lines = [line for line in server.stderr.read_text().splitlines() if line.strip()]
    events = []
    for line in lines:
        record = json.loads(line)  # not a terminal: every log line is one JSON object
        assert isinstance(record, dict) and "event" in record, line
        events.append(record["event"])
    assert "server.started" in events and "server.stopped" in events, events
    assert events.index("server.started") < events.index("server.stopped")
    everything = server.output()
    for secret in (PASSWORD, token, canary.marker):
        assert secret not in everything, "a password, token or user's text reached the server's output"


async def test_server_tunes_the_collector_freezes_its_start_up_heap_and_exports_pauses(tmp_path: Path) -> None:
    env = server_env(THERAPY_ENV="development", THERAPY_GC_THRESHOLD_GEN0="5000", THERAPY_GC_THRESHOLD_GEN1="20",
                     THERAPY_GC_THRESHOLD_GEN2="30")
    async with started_server(tmp_path, tmp_path / "data", env) as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
        assert await stop(server) == 0
    records = [json.loads(line) for line in server.stderr.read_text().splitlines() if line.strip()]
    tuned = next(r for r in records if r["event"] == "server.gc")
    assert tuned["thresholds"] == [5000, 20, 30] and tuned["frozen_objects"] > 10_000
    # the start-up collection before freezing is the first full one the process measured
    assert 'gc_pause_seconds_count{generation="2"}' in text and "event_loop_lag_seconds_bucket" in text


async def test_production_without_secrets_refuses_to_start(tmp_path: Path) -> None:
    started = time.monotonic()
    code, output = await run_cli(
        tmp_path, "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
        env=server_env(THERAPY_ENV="production"), timeout=30,
    )
    assert code != 0, output
    assert time.monotonic() - started < 30
    for name in ("THERAPY_SECRET_KEY", "THERAPY_ENCRYPTION_KEYS", "THERAPY_METRICS_TOKEN", "THERAPY_PUBLIC_URL"):
        assert name in output, output
    assert not (tmp_path / "data" / "secrets.json").exists(), "production must never generate secrets"


async def test_migrate_downgrade_and_create_admin_from_the_command_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = server_env(THERAPY_ENV="development")

    code, output = await run_cli(tmp_path, "--data-dir", str(data_dir), "migrate", env=env)
    assert code == 0, output
    assert "schema at" in output and "schema at base" not in output, output
    code, output = await run_cli(tmp_path, "--data-dir", str(data_dir), "downgrade", "base", env=env)
    assert code == 0, output
    assert "schema at base" in output, output
    code, output = await run_cli(tmp_path, "--data-dir", str(data_dir), "migrate", env=env)
    assert code == 0, output

    admin_password = f"admin-{CANARY}"
    code, output = await run_cli(
        tmp_path, "--data-dir", str(data_dir), "create-admin", "--email", "a@b.example",
        env={**env, "ADMIN_PASSWORD": admin_password},
    )
    assert code == 0, output
    assert "admin account" in output and admin_password not in output, output

    async with started_server(tmp_path, data_dir, env) as server:
        async with aiohttp.ClientSession() as http:
            signin = {"email": "a@b.example", "password": admin_password}
            async with http.post(f"{server.url}/api/auth/signin", json=signin) as resp:
                data = await resp.json()
                assert resp.status == 200, data
            assert data["user"]["role"] == "admin"
        assert await stop(server) == 0
    assert admin_password not in server.output()


async def test_port_zero_allows_the_origin_of_the_port_it_got(tmp_path: Path) -> None:
    """`--port 0`: the public URL and the default allowed origins name the port the system gave."""
    stdout, stderr = tmp_path / "server.stdout", tmp_path / "server.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "signalling", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "data"),
            cwd=ROOT, env=server_env(THERAPY_ENV="development"), stdout=out, stderr=err,
        )
    server = Process(proc, stdout, stderr)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (match := re.search(r"Running on http://127\.0\.0\.1:(\d+)", stdout.read_text(errors="replace"))):
            if proc.returncode is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{server.output()[-3000:]}")
            await asyncio.sleep(0.1)
        port = int(match.group(1))
        assert port != 0
        server.url = f"http://127.0.0.1:{port}"
        assert await wait_healthy(server)
        body = {"email": "zero@example.org", "password": PASSWORD, "display_name": "Zero", "date_of_birth": "1990-05-17"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/api/auth/register", json=body, headers={"Origin": server.url}) as resp:
                assert resp.status == 201, await resp.text()
            async with http.post(f"{server.url}/api/auth/password-reset", json={"email": body["email"]},
                                 headers={"Origin": "http://127.0.0.1:0"}) as resp:
                assert (resp.status, (await resp.json())["error"]["code"]) == (403, "bad_origin")
        config = next(json.loads(line) for line in stderr.read_text().splitlines() if '"server.config"' in line)
        assert config["port"] == port
        assert await stop(server) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
