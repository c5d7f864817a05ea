"""Support for the end-to-end tests in real Chromium: the server as a child process (started as the README starts
it), the fake microphones' WAV files, Chromium's command line, and recording what a browser received.

Each party runs in its own Chromium process when it needs its own fake microphone (Chromium reads the file given by
`--use-file-for-fake-audio-capture` per process): the therapists (and the admin) in one whose microphone is silent,
the client in one whose microphone plays a real speech recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import re
import shutil
import time
import urllib.error
import urllib.request
import uuid
import wave
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from conftest import IN_CI, ROOT, SPEECH_DIR, free_port

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
#: The README's screenshots: `shot(..., readme=NAME)` refreshes docs/screenshots/NAME.png when this variable is set
#: (`E2E_README_SCREENSHOTS=1 .venv/bin/pytest tests/e2e/test_quick_connect.py`).
README_SHOTS = ROOT / "docs" / "screenshots"
UPDATE_README_SHOTS = os.environ.get("E2E_README_SCREENSHOTS", "").lower() in ("1", "true", "yes")
PASSWORD = "e2e password 123"
PHONE = {"width": 360, "height": 740}
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "admin passphrase for e2e"
#: The client's voice: LibriSpeech test-clean 61-70968-0000, "He began a confused complaint against the wizard, who
#: had vanished behind the curtain on the left." Its distinctive words are looked for in the live transcript.
SPEECH_CLIP = "ls-test-clean_61-70968-0000.wav"
SPEECH_WORDS = ("wizard", "curtain")
FAKE_RATE = 48000


# ------------------------------------------------------------------ the server


@dataclass
class E2EServer:
    url: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _server_env(port: int, settings: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THERAPY_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "THERAPY_ENV": "development",
        "THERAPY_ICE_LOOPBACK_ONLY": "true",
        "THERAPY_MEDIA_HOST_ADDRESSES": "127.0.0.1",
        "THERAPY_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(settings or {})
    return env


def _healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(urllib.error.URLError, OSError), \
                urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
            if resp.status == 200:
                return True
        time.sleep(0.1)
    return False


def require_browser_setup() -> None:
    """Chromium and the npm packages are installed by scripts/test: missing, they fail the tests in CI and skip them
    (with the reason) elsewhere."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Chromium ({CHROMIUM}; apt-get install chromium)")
    if not (ROOT / "node_modules" / "socket.io-client" / "dist").is_dir():
        missing.append("the browser client's npm packages (npm ci)")
    if missing:
        message = f"end-to-end tests need {' and '.join(missing)}; scripts/test installs them"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def start_server(workdir: Path, settings: dict[str, str] | None = None) -> E2EServer:
    """`python -m signalling --host 127.0.0.1 --port P --data-dir D` with loopback-only ICE (and `settings`, more
    THERAPY_* variables), plus an admin account made with `create-admin` beforehand. A port found free may be taken
    before the server binds it: try again."""
    data_dir = workdir / "data"
    admin = subprocess.run(
        [PYTHON, "-m", "signalling", "--data-dir", str(data_dir), "create-admin", "--email", ADMIN_EMAIL],
        cwd=ROOT, env={**_server_env(0), "ADMIN_PASSWORD": ADMIN_PASSWORD}, capture_output=True, timeout=120, check=False,
    )
    assert admin.returncode == 0, admin.stdout.decode(errors="replace") + admin.stderr.decode(errors="replace")
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"server-{attempt}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [PYTHON, "-m", "signalling", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
                cwd=ROOT, env=_server_env(port, settings), stdout=log, stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        if _healthy(url, proc, 60):
            return E2EServer(url, data_dir, log_path, proc)
        stop_server(proc)
    raise AssertionError(f"the server did not start; see {workdir}:\n{log_path.read_text(errors='replace')[-3000:]}")


def running_server(tmp_path_factory: pytest.TempPathFactory,
                   settings: dict[str, str] | None = None) -> Iterator[E2EServer]:
    """The body of each test module's `e2e_server` fixture: the real server process (with `settings`, more THERAPY_*
    variables), stopped afterwards."""
    require_browser_setup()
    server = start_server(tmp_path_factory.mktemp("e2e-server"), settings)
    try:
        yield server
    finally:
        stop_server(server.proc)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ fake microphones


def _write_wav(path: Path, pcm: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FAKE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def speech_wav(path: Path, clip: str = SPEECH_CLIP, lead_s: float = 1.5, tail_s: float = 12.0) -> Path:
    """The clip resampled to 48 kHz (safest for Chromium's fake capture), after `lead_s` of silence (playback starts
    at getUserMedia, before the link to the server is up) and before `tail_s` of silence (so the server's voice
    activity detection sees the utterance end)."""
    chunks: list[np.ndarray] = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=FAKE_RATE)
    with av.open(str(SPEECH_DIR / clip)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    speech = np.concatenate(chunks)
    return _write_wav(path, np.concatenate([_silence(lead_s), speech, _silence(tail_s)]))


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * FAKE_RATE), dtype=np.int16)


def silence_wav(path: Path, seconds: float = 180.0) -> Path:
    return _write_wav(path, _silence(seconds))


HEADLESS_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--allow-loopback-in-peer-connection"]


def chromium_args(wav: Path) -> list[str]:
    """A fake camera, and a fake microphone playing `wav`, both allowed without asking."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop", *HEADLESS_ARGS]


Launch = Callable[[list[str]], Awaitable[Any]]
#: Each page's name as given to `PageProblems.watch`, for the screenshots of a failed test.
_PAGE_NAMES: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def chromium_processes(request: pytest.FixtureRequest) -> AsyncIterator[Launch]:
    """`launch(args)` starts a Chromium process for the test; all are closed after it. When the test failed, every
    page still open is saved first, as test-artifacts/failed/<test>/<page name>.png (see `PageProblems.watch`)."""
    from playwright.async_api import async_playwright

    failed_before = request.session.testsfailed  # the call's report is counted before fixtures are torn down
    browsers: list[Any] = []
    async with async_playwright() as pw:
        async def launch(args: list[str]) -> Any:
            browsers.append(await pw.chromium.launch(executable_path=CHROMIUM, args=args))
            return browsers[-1]

        try:
            yield launch
        finally:
            if request.session.testsfailed > failed_before:
                await save_open_pages(request.node.name, browsers)
            for browser in reversed(browsers):
                with contextlib.suppress(Exception):
                    await browser.close()


async def save_open_pages(test_name: str, browsers: list[Any]) -> list[Path]:
    """A screenshot of every page still open in `browsers`, under test-artifacts/failed/<test>/."""
    folder = ARTIFACTS / "failed" / re.sub(r"[^\w.-]+", "_", test_name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    saved = []
    pages = [page for browser in browsers for context in browser.contexts for page in context.pages]
    for n, page in enumerate(pages, 1):
        name = re.sub(r"[^\w.-]+", "_", _PAGE_NAMES.get(page, "page"))
        path = folder / f"{n:02d}-{name}.png"
        with contextlib.suppress(Exception):  # a crashed or closing page: save the others
            await page.screenshot(path=str(path), full_page=True, timeout=5_000)
            saved.append(path)
    return saved


# ------------------------------------------------------------------ what a page received, and what went wrong in it


@dataclass
class Received:
    """Every websocket frame and every response body one page received (for the canary check)."""

    frames: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    pending: set[asyncio.Task[None]] = field(default_factory=set)

    def watch(self, page: Any) -> None:
        def on_websocket(ws: Any) -> None:
            ws.on("framereceived", lambda payload: self.frames.append(
                payload if isinstance(payload, str) else payload.decode("utf-8", "replace")))

        async def keep_body(response: Any) -> None:
            with contextlib.suppress(Exception):  # redirects and aborted loads have no body
                self.bodies.append(await response.body())

        def on_response(response: Any) -> None:
            task = asyncio.ensure_future(keep_body(response))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

        page.on("websocket", on_websocket)
        page.on("response", on_response)

    async def settle(self) -> None:
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    def contains(self, marker: str) -> list[str]:
        hits = [f"frame: {f[:200]}" for f in self.frames if marker in f]
        hits += [f"body: {b[:200]!r}" for b in self.bodies if marker.encode() in b]
        return hits


@dataclass
class PageProblems:
    """Uncaught errors and CSP violations on a page: any of them fails the test."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any, name: str) -> None:
        _PAGE_NAMES[page] = name
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: uncaught {exc}"))

        def on_console(msg: Any) -> None:
            text = msg.text
            if msg.type == "error" and ("Content Security Policy" in text or "Refused to" in text):
                self.errors.append(f"{name}: {text}")

        page.on("console", on_console)


# ------------------------------------------------------------------ REST, the ledger, steps every browser test takes


async def rest(http: aiohttp.ClientSession, server: E2EServer, method: str, path: str, token: str | None = None,
               **kwargs: Any) -> Any:
    """A REST call to the server that must succeed; its JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    async with http.request(method, server.url + path, headers=headers, **kwargs) as resp:
        body = await resp.json()
        assert resp.status < 300, (path, resp.status, body)
        return body


async def credit_client(http: aiohttp.ClientSession, server: E2EServer, admin_token: str, client_id: int,
                        pence: int) -> int:
    """Money in a client's wallet as an admin credits it (`POST /api/admin/billing/clients/{id}/credits`): asking
    for a session needs a minimum balance. Returns the new balance."""
    body = await rest(http, server, "POST", f"/api/admin/billing/clients/{client_id}/credits", admin_token,
                      json={"amount_pence": pence, "memo": "end-to-end test"},
                      headers={"Idempotency-Key": f"e2e-{os.urandom(8).hex()}"})
    return int(body["balance_pence"])


async def ledger_earnings(server: E2EServer, therapist_id: int, pence: int) -> None:
    """Available earnings for a therapist, posted straight into the server's ledger (its SQLite file under the data
    folder), as the billing tests earn them: the browser tests of withdrawals need money, not a call."""
    from billing import ledger
    from core.clock import SystemClock
    from core.db import Database

    db = Database(f"sqlite+aiosqlite:///{(server.data_dir / 'therapy.db').resolve()}")
    try:
        await ledger.run_once(db, lambda session: ledger.post(
            session, key=f"e2e-earnings:{os.urandom(8).hex()}", kind="settlement", now=SystemClock().now(),
            legs=[(ledger.CARD_CLEARING, -pence), (ledger.available(therapist_id), pence)]))
    finally:
        await db.engine.dispose()


async def go_available(page: Any) -> None:
    """Switch availability on once the dashboard knows the current state (another tab may have done it already)."""
    from playwright.async_api import expect

    switch = page.get_by_label("Available for quick connect")
    await expect(switch).to_be_enabled()
    await switch.check()
    await expect(switch).to_be_checked()
    await expect(page.locator("#pool-empty")).to_be_visible()


async def wait_connected(page: Any) -> None:
    await page.wait_for_function("() => window.__therapyCall?.pc?.connectionState === 'connected'", timeout=20_000)


async def verify_email(http: aiohttp.ClientSession, server: "E2EServer", email: str) -> None:
    """Follow the link of the verification e-mail to `email`, as its owner would: its token, read from the server's
    outbox (its SQLite file, decrypted with the keys in its data folder), posted back as the page does. An admin
    approves only a therapist whose address is verified."""
    import json
    import re

    from core.crypto import Keyring
    from core.db import Database
    from messaging.outbox import messages_for

    keyring = Keyring.from_spec(json.loads((server.data_dir / "secrets.json").read_text())["encryption_keys"])
    db = Database(f"sqlite+aiosqlite:///{(server.data_dir / 'therapy.db').resolve()}")
    try:
        async with db.session() as session:
            mails = await messages_for(session, keyring, email, "verify_email")
    finally:
        await db.dispose()
    assert mails, f"no verification e-mail was queued for {email}"
    match = re.search(r"/verify-email#token=([A-Za-z0-9_-]+)", mails[-1].body)
    assert match, "the verification e-mail carries its link"
    await rest(http, server, "POST", "/api/auth/verify-email", json={"token": match.group(1)})


async def make_people(http: aiohttp.ClientSession, server: "E2EServer", *, client: str, therapist: str,
                      rate_pence: int = 100, client_credit_pence: int = 0,
                      client_born: str = "1988-02-03") -> dict[str, Any]:
    """A client (born on `client_born`; an under-18 gets a guardian's consent recorded by the admin) and an approved
    therapist (charging `rate_pence` a minute), made over REST, and the admin; with `client_credit_pence` in the
    client's wallet. E-mail addresses come from the first word of each name."""
    run = uuid.uuid4().hex[:6]
    client_email = f"{client.split()[0].lower()}-{run}@example.org"
    therapist_email = f"{therapist.split()[-2].lower()}-{run}@example.org"
    client_made = await rest(http, server, "POST", "/api/auth/register", json={
        "email": client_email, "password": PASSWORD, "display_name": client, "date_of_birth": client_born})
    therapist_made = await rest(http, server, "POST", "/api/auth/apply", json={
        "email": therapist_email, "password": PASSWORD, "display_name": therapist, "qualifications": "MSc",
        "registration_body": "BACP", "registration_number": "42", "insurance_provider": "Balens",
        "insurance_expiry": "2031-01-01", "rate_pence_per_minute": rate_pence})
    admin = await rest(http, server, "POST", "/api/auth/signin", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    await verify_email(http, server, therapist_email)
    await rest(http, server, "POST", f"/api/admin/applications/{therapist_made['user']['id']}/approve", admin["token"])
    if client_made["user"]["client"]["minor"]:
        await rest(http, server, "POST", f"/api/admin/clients/{client_made['user']['id']}/guardian-consent",
                   admin["token"], json={"guardian_name": "Pat", "guardian_relationship": "mother"})
    if client_credit_pence:
        await credit_client(http, server, admin["token"], client_made["user"]["id"], client_credit_pence)
    return {"client": client_made, "therapist": therapist_made, "admin": admin, "client_email": client_email,
            "therapist_email": therapist_email}


async def fits_the_screen(page: Any) -> None:
    width = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls sideways on a phone: {width}"


async def shot(page: Any, name: str, *, readme: str | None = None) -> None:
    """A full-page screenshot as test-artifacts/NAME.png; one the README shows also goes to docs/screenshots/README.png
    when E2E_README_SCREENSHOTS is set."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if readme and UPDATE_README_SHOTS:
        shutil.copyfile(ARTIFACTS / f"{name}.png", README_SHOTS / f"{readme}.png")
