"""Shared fixtures: settings, real databases (SQLite and PostgreSQL), Redis key prefixes, in-process servers,
users, and the canary that proves sensitive text never reaches the logs.

PostgreSQL and Redis come from TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) and
TEST_REDIS_URL (default redis://127.0.0.1:6379/0). When they are down, their tests fail under CI=true and are
skipped (with the reason) elsewhere; `scripts/test` starts them, so a normal run never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web

from core.clock import FrozenClock
from core.crypto import Keyring
from core.logging import configure_logging
from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SPEECH_DIR = Path(os.environ.get("SPEECH_DIR", ROOT.parent / "shared" / "speech"))
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PASSWORD = "correct horse battery"
#: What `Users.client()` puts in a new client's wallet (£50: fifty minutes at the test therapists' £1 a minute).
CLIENT_DEPOSIT_PENCE = 5000
CANARY = "CANARY-5e1f-do-not-log"


def _unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc}); scripts/test starts it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- logs and the canary


class LogCapture(io.StringIO):
    """Everything the process logs during a test (structlog and the standard library)."""

    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def captured_logs() -> Iterator[LogCapture]:
    stream = LogCapture()
    configure_logging("debug", json=True, stream=stream)
    yield stream


@dataclass
class Canary:
    """A marker to write into every kind of sensitive text; `check` asserts it never leaked."""

    logs: LogCapture
    marker: str = CANARY
    received: list[str] = field(default_factory=list)

    def text(self, prefix: str = "") -> str:
        return f"{prefix}{self.marker}"

    def saw(self, payload: Any) -> None:
        """Record something a client (or any other party) received, to be checked too."""
        self.received.append(repr(payload))

    def assert_not_leaked(self) -> None:
        assert self.marker not in self.logs.getvalue(), "sensitive text reached the logs"
        for item in self.received:
            assert self.marker not in item, f"sensitive text reached a party that must not see it: {item[:200]}"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with its cheapest parameters: tests create many accounts. The real cost runs in the server-process tests."""
    from argon2 import PasswordHasher

    from accounts import passwords

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", cheap)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", cheap.hash("dummy-password-for-timing"))


@pytest.fixture
def canary(captured_logs: LogCapture) -> Iterator[Canary]:
    c = Canary(captured_logs)
    yield c
    c.assert_not_leaked()


# ---------------------------------------------------------------- databases


async def _pg_admin() -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable("PostgreSQL", exc)


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A brand-new, empty PostgreSQL database (SQLAlchemy URL), dropped afterwards."""
    conn = await _pg_admin()
    name = f"t_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """An empty PostgreSQL database of this test's own."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Runs the test once on SQLite and once on the real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url


# ---------------------------------------------------------------- redis


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; every key under it is deleted afterwards."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _unavailable("Redis", exc)
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        async for key in client.scan_iter(f"{prefix}:*"):
            await client.delete(key)
        await client.aclose()


# ---------------------------------------------------------------- settings and servers


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Test settings: fresh data folder, fixed test secrets, SQLite unless a URL is given."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "env": "test",
            "data_dir": str(tmp_path / "data"),
            "secret_key": "test-secret-key-" + "x" * 32,
            "encryption_keys": TEST_KEYS,
            "outbox_poll_s": 0.2,
            "allowed_origins": "http://127.0.0.1:8080",
        }
        base.update(overrides)
        return load_settings({}, overrides=base)

    return build


TEST_KEYS = Keyring.generate_spec("test1")


@dataclass
class RunningServer:
    """An in-process server on a free loopback port."""

    app: web.Application
    runner: web.AppRunner
    url: str

    @property
    def services(self) -> Any:
        from signalling.http import SERVICES

        return self.app[SERVICES]


async def start_server(settings: Settings, **app_kwargs: Any) -> RunningServer:
    from signalling.app import create_app

    app = create_app(settings, **app_kwargs)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return RunningServer(app, runner, f"http://127.0.0.1:{port}")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def server(make_settings: Callable[..., Settings], clock: FrozenClock) -> AsyncIterator[RunningServer]:
    """The whole app in this process, embedded mode (SQLite, memory), with a frozen clock."""
    running = await start_server(make_settings(), clock=clock)
    try:
        yield running
    finally:
        await running.runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# ---------------------------------------------------------------- users


@dataclass
class User:
    id: int
    email: str
    token: str
    role: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Users:
    """Creates users through the real REST API (and, for admin-only steps, the domain functions)."""

    def __init__(self, server: RunningServer, http: aiohttp.ClientSession,
                 client_balance_pence: int = CLIENT_DEPOSIT_PENCE) -> None:
        self.server, self.http, self.n = server, http, 0
        self.client_balance_pence = client_balance_pence

    def _email(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}-{uuid.uuid4().hex[:6]}@example.org"

    async def client(self, *, date_of_birth: str = "1990-05-17", balance_pence: int | None = None,
                     **extra: Any) -> User:
        """A registered client; with `balance_pence` in their wallet, put there through the ledger (calls are charged
        per minute and asking for a session needs a minimum balance)."""
        body = {"email": self._email("client"), "password": PASSWORD, "display_name": extra.pop("display_name", "Casey"),
                "date_of_birth": date_of_birth, **extra}
        async with self.http.post(f"{self.server.url}/api/auth/register", json=body) as resp:
            data = await resp.json()
            assert resp.status == 201, data
        user = User(data["user"]["id"], body["email"], data["token"], "client")
        balance_pence = self.client_balance_pence if balance_pence is None else balance_pence
        if balance_pence:
            await deposit(self.server, user.id, balance_pence)
        return user

    async def therapist(self, *, approved: bool = True, **extra: Any) -> User:
        body = {
            "email": self._email("therapist"), "password": PASSWORD, "display_name": extra.pop("display_name", "Dr Tess"),
            "qualifications": "MSc Counselling", "registration_body": "BACP", "registration_number": "123456",
            "insurance_provider": "Balens", "insurance_expiry": "2030-01-01", "bio": "I listen.",
            "expertise": ["anxiety"], "rate_pence_per_minute": 100, **extra,
        }
        async with self.http.post(f"{self.server.url}/api/auth/apply", json=body) as resp:
            data = await resp.json()
            assert resp.status == 201, data
        user = User(data["user"]["id"], body["email"], data["token"], "therapist")
        if approved:
            await approve_therapist(self.server, user.id)
        return user

    async def verify_email(self, user: User) -> None:
        """Follow the link of the verification e-mail, as its owner would (an admin approves only a verified
        applicant)."""
        await verify_email(self.server, self.http, user.email)

    async def admin(self) -> User:
        from accounts.registration import create_admin

        email = self._email("admin")
        await create_admin(self.server.services.accounts, email, PASSWORD)
        async with self.http.post(f"{self.server.url}/api/auth/signin", json={"email": email, "password": PASSWORD}) as resp:
            data = await resp.json()
            assert resp.status == 200, data
        return User(data["user"]["id"], email, data["token"], "admin")


async def deposit(server: RunningServer, user_id: int, pence: int) -> int:
    """Money in a client's wallet straight through the ledger, as the benchmarks and the load-test tool give it."""
    from billing.wallet import credit_wallet

    svc = server.services
    return await credit_wallet(svc.db, svc.clock, user_id, pence, key=f"test-deposit:{uuid.uuid4().hex}")


async def deposit_at(database_url: str, user_id: int, pence: int = CLIENT_DEPOSIT_PENCE) -> int:
    """`deposit` for a deployment of server processes this test started, through its database."""
    from billing.wallet import credit_wallet
    from core.clock import SystemClock
    from core.db import Database

    db = Database(database_url)
    try:
        return await credit_wallet(db, SystemClock(), user_id, pence, key=f"test-deposit:{uuid.uuid4().hex}")
    finally:
        await db.dispose()


async def verify_email(server: RunningServer, http: aiohttp.ClientSession, email: str) -> None:
    """Open the link of the latest verification e-mail to `email`: its token posted back, as the page does."""
    import re

    from messaging.outbox import messages_for

    svc = server.services
    async with svc.db.session() as session:
        mails = await messages_for(session, svc.keyring, email, "verify_email")
    assert mails, f"no verification e-mail was queued for {email}"
    match = re.search(r"/verify-email#token=([A-Za-z0-9_-]+)", mails[-1].body)
    assert match, "the verification e-mail carries its link"
    async with http.post(f"{server.url}/api/auth/verify-email", json={"token": match.group(1)}) as resp:
        assert resp.status == 200, await resp.text()


async def approve_therapist(server: RunningServer, user_id: int) -> None:
    """Approve an application directly in the database (the admin route has its own tests)."""
    from accounts.models import ApplicationStatus, TherapistProfile

    svc = server.services
    async with svc.db.transaction() as session:
        profile = await session.get(TherapistProfile, user_id)
        assert profile is not None
        profile.status = ApplicationStatus.approved
        profile.reviewed_at = svc.clock.now()


@pytest.fixture
def users(server: RunningServer, http: aiohttp.ClientSession) -> Users:
    return Users(server, http)


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy (bounded); returns its value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- Socket.IO clients


class Sock:
    """A python-socketio client that records every event it receives, for assertions."""

    def __init__(self, url: str, token: str, name: str = "") -> None:
        import socketio

        self.url, self.token, self.name = url, token, name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

        @self.sio.on("*")
        async def any_event(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self._changed.set()

    async def connect(self) -> "Sock":
        await self.sio.connect(self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=10)
        return self

    async def call(self, event: str, data: Any = None, timeout: float = 10) -> Any:
        return await self.sio.call(event, data if data is not None else {}, timeout=timeout)

    def received(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def next(self, event: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 5) -> Any:
        """The first `event` (already received or arriving within `timeout`) whose data satisfies `predicate`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for data in self.received(event):
                if predicate(data):
                    return data
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{self.name or 'socket'} did not receive {event} in time; got {[e for e, _ in self.events]}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Any]]:
    """`await sockets(server_or_url, user)` opens a connected `Sock`; all are closed at the end of the test."""
    opened: list[Sock] = []

    async def open_socket(target: Any, user: User, name: str = "") -> Sock:
        url = target if isinstance(target, str) else target.url
        sock = Sock(url, user.token, name)
        opened.append(sock)
        return await sock.connect()

    yield open_socket
    for sock in opened:
        with contextlib.suppress(Exception):
            await sock.close()


async def open_call(server: RunningServer, therapist: User, client: User, *, recording_consent: bool = True) -> int:
    """A quick-connect call between the two, opened directly (the pool's own tests cover how calls come about)."""
    from calls.models import CallKind
    from calls.opening import open_call as open_call_row, record_consent

    svc = server.services
    async with svc.db.transaction() as session:
        call = open_call_row(session, now=svc.clock.now(), kind=CallKind.quick_connect, therapist_id=therapist.id,
                             client_id=client.id, terms_version=svc.settings.terms_version,
                             recording_consent=recording_consent)
        await session.flush()
        record_consent(session, call, now=svc.clock.now())
        return call.id
