"""Quick connect to the end of a call in real Chromium, against the real server process.

Parties: an admin and two therapists (contexts of one Chromium process whose fake microphone is silent) and a
client on a phone-sized screen (a Chromium process of its own, whose fake microphone plays real speech).

1. The client registers and asks for a session; both available therapists see it (with a banner and a chime); the
   first accepts; the second sees it vanish, and a second, "slow" tab of theirs that had not heard yet gets "taken"
   when it clicks. The client accepts the first therapist's card (terms + recording consent); both land on the call
   screen; the peer connection is connected on both and the remote video plays.
2. Chat both ways; the therapist's notes save and come back after a reload (which also exercises rejoining); the
   client's page never has notes.
3. The client's words appear in the therapist's live transcript under "Client", nothing under "You".
4. The therapist hangs up; both see the end; the call log shows who ended it, the transcript (searchable), notes,
   chat and the recordings (downloadable); a search across all the therapist's transcripts finds the client's words.
5. The canary written into the notes never reaches the client's browser (every websocket frame and response body),
   nor the server's log.

Screenshots of the key screens go to test-artifacts/ (two of them to docs/screenshots/ for the README with
E2E_README_SCREENSHOTS=1).
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, expect

from conftest import CANARY
from e2e_support import (
    ADMIN_EMAIL, ADMIN_PASSWORD, SPEECH_WORDS, E2EServer, PageProblems, Received, chromium_args, chromium_processes,
    credit_client, go_available, rest, running_server, shot, silence_wav, speech_wav, verify_email, wait_connected,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    yield from running_server(tmp_path_factory)


PASSWORD = "e2e password 123"
STEP_TIMEOUT_MS = 15_000
TRANSCRIPT_TIMEOUT_MS = 30_000


@pytest.fixture
async def browsers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Browser, Browser]]:
    """(therapists' browser with a silent microphone, client's browser speaking the clip)."""
    silent, speech = silence_wav(tmp_path / "silence.wav"), speech_wav(tmp_path / "speech.wav")
    async with chromium_processes(request) as launch:
        yield await launch(chromium_args(silent)), await launch(chromium_args(speech))


#: Keeps every text the call screen's banner showed (it changes quickly: "… is joining…", then "… joined.").
BANNER_HISTORY = """
if (location.pathname.startsWith("/call/")) {
  window.__bannerTexts = [];
  document.addEventListener("DOMContentLoaded", () => {
    const banner = document.getElementById("peer-banner");
    new MutationObserver(() => {
      const text = banner.textContent.trim();
      if (text && window.__bannerTexts.at(-1) !== text) window.__bannerTexts.push(text);
    }).observe(banner, { childList: true, subtree: true, characterData: true });
  });
}
"""


async def new_page(browser: Browser, url: str, problems: PageProblems, name: str, *, phone: bool = False,
                   raw_audio: bool = True) -> tuple[BrowserContext, Page]:
    viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    context = await browser.new_context(base_url=url, viewport=viewport, device_scale_factor=1)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    if raw_audio:  # the documented switch for tests: no echo cancellation, noise suppression or auto gain
        await context.add_init_script("localStorage.setItem('therapy.rawAudio', '1')")
    page = await context.new_page()
    problems.watch(page, name)
    return context, page


def png_picture() -> bytes:
    image = Image.new("RGB", (240, 240), (70, 120, 190))
    for x in range(60, 180):
        for y in range(60, 180):
            if (x - 120) ** 2 + (y - 120) ** 2 < 3600:
                image.putpixel((x, y), (245, 210, 160))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def remote_video_plays(page: Page) -> None:
    await page.wait_for_function("() => document.querySelector('#remote-video').videoWidth > 0", timeout=STEP_TIMEOUT_MS)
    start = await page.evaluate("() => document.querySelector('#remote-video').currentTime")
    await page.wait_for_function("t => document.querySelector('#remote-video').currentTime > t + 0.5", arg=start,
                                 timeout=STEP_TIMEOUT_MS)


async def test_quick_connect_video_call_chat_notes_transcript_and_call_log(
    e2e_server: E2EServer, browsers: tuple[Browser, Browser], tmp_path: Path,
) -> None:
    server, (therapist_browser, client_browser) = e2e_server, browsers
    problems = PageProblems()
    run = uuid.uuid4().hex[:6]
    t1_email, t2_email, c_email = f"tess-{run}@example.org", f"theo-{run}@example.org", f"casey-{run}@example.org"
    picture = tmp_path / "me.png"
    picture.write_bytes(png_picture())

    async with aiohttp.ClientSession() as http:
        # ------------------------------------------------------------ therapists: one applies in the browser
        _, t1 = await new_page(therapist_browser, server.url, problems, "therapist1")
        await t1.goto("/#apply")
        form = t1.locator("#panel-apply")
        await form.get_by_label("Name shown to clients").fill("Dr Tess Quinn")
        await form.get_by_label("E-mail address").fill(t1_email)
        await form.get_by_label("Password").fill(PASSWORD)
        await form.get_by_label("Qualifications").fill("MSc Counselling Psychology")
        await form.get_by_label("Registration body").fill("BACP")
        await form.get_by_label("Registration number").fill("00123456")
        await form.get_by_label("Insurance provider").fill("Balens")
        await form.get_by_label("Insurance expiry date").fill("2031-01-31")
        await form.get_by_label("Bio (clients see it before they accept)").fill("I help people through anxiety and panic.")
        await form.get_by_label("Areas of expertise").fill("anxiety, panic")
        await t1.get_by_role("button", name="Send my application").click()
        await t1.wait_for_url("**/dashboard")
        await expect(t1.locator("#application-state")).to_contain_text("being reviewed")
        await expect(t1.locator("#verify-notice")).to_contain_text("approved only once it is verified")
        await t1.get_by_label("Choose a picture").set_input_files(str(picture))
        await t1.get_by_role("button", name="Upload picture").click()
        await expect(t1.locator("#picture-status")).to_have_text("Picture saved.")

        # the other applies over REST; the admin approves both (the first on the admin page)
        t2_signup = await rest(http, server, "POST", "/api/auth/apply", json={
            "email": t2_email, "password": PASSWORD, "display_name": "Dr Theo Marsh", "qualifications": "PhD",
            "registration_body": "UKCP", "registration_number": "778899", "insurance_provider": "Hiscox",
            "insurance_expiry": "2031-06-30", "bio": "Grief and loss.", "rate_pence_per_minute": 90})
        for email in (t1_email, t2_email):  # an admin can approve only a verified address
            await verify_email(http, server, email)
        _, admin = await new_page(therapist_browser, server.url, problems, "admin", raw_audio=False)
        await admin.goto("/")
        await admin.locator("#signin-form").get_by_label("E-mail address").fill(ADMIN_EMAIL)
        await admin.locator("#signin-form").get_by_label("Password").fill(ADMIN_PASSWORD)
        await admin.get_by_role("button", name="Sign in").click()
        await admin.wait_for_url("**/admin")
        await admin.get_by_role("button", name="Approve Dr Tess Quinn").click()
        await expect(admin.locator("#apps-notice")).to_contain_text("Dr Tess Quinn is approved")
        await admin.get_by_role("button", name="Approve Dr Theo Marsh").click()
        await expect(admin.locator("#apps-notice")).to_contain_text("Dr Theo Marsh is approved")

        # approval closes the therapist's connections: the dashboard reconnects and shows the pool
        await expect(t1.locator("#pool-section")).to_be_visible()
        await go_available(t1)

        # the second therapist: a normal dashboard tab, and a "slow" one that has not heard of removals yet
        t2_context, t2 = await new_page(therapist_browser, server.url, problems, "therapist2")
        await t2_context.add_init_script(f"sessionStorage.setItem('therapy.token', {t2_signup['token']!r})")
        t2_slow = await t2_context.new_page()
        problems.watch(t2_slow, "therapist2-slow")

        def slow_dashboard(ws: Any) -> None:
            upstream = ws.connect_to_server()
            upstream.on_message(lambda m: None if isinstance(m, str) and "pool.request_removed" in m else ws.send(m))

        await t2_slow.route_web_socket(re.compile(r"/socket\.io/"), slow_dashboard)
        for page in (t2, t2_slow):
            await page.goto("/dashboard")
            await go_available(page)

        # ------------------------------------------------------------ 1. the client asks; the first accept wins
        client_context, client = await new_page(client_browser, server.url, problems, "client", phone=True)
        received = Received()
        received.watch(client)
        await client.goto("/#register")
        form = client.locator("#panel-register")
        await form.get_by_label("Your name (as your therapist will see it)").fill("Casey")
        await form.get_by_label("E-mail address").fill(c_email)
        await form.get_by_label("Password").fill(PASSWORD)
        await form.get_by_label("Date of birth").fill("1994-03-02")
        await client.get_by_role("button", name="Create my account").click()
        await client.wait_for_url("**/home")
        await client.get_by_label("What would you like to talk about?").fill("Panic attacks at night")
        await client.get_by_label("Anything the therapist should know first (optional)").fill("Please be gentle")
        # sessions are paid by the minute: asking needs £10 in the wallet; an admin credits it and it shows at once
        await client.get_by_role("button", name="Talk to someone now").click()
        await expect(client.locator("#request-form .form-error")).to_contain_text(
            "You need at least £10.00 in your wallet")
        await expect(client.locator("#home-balance")).to_have_text("£0.00")
        token_of = "() => sessionStorage.getItem('therapy.token')"
        me = await rest(http, server, "GET", "/api/me", await client.evaluate(token_of))
        await credit_client(http, server, await admin.evaluate(token_of), me["id"], 2000)
        await expect(client.locator("#home-balance")).to_have_text("£20.00")
        await expect(client.locator("#request-form .form-error")).to_be_empty()
        await client.get_by_role("button", name="Talk to someone now").click()
        await expect(client.locator("#waiting")).to_be_visible()
        await expect(client.locator("#waiting-text")).to_contain_text("2 therapists are online")

        for page in (t1, t2, t2_slow):
            card = page.locator("#pool li.request")
            await expect(card).to_have_count(1)
            await expect(card).to_contain_text("Casey")
            await expect(card).to_contain_text("Panic attacks at night")
            await expect(card).to_contain_text("Please be gentle")
            await expect(card.locator(".age")).to_contain_text("waiting")
        await expect(t1.locator("#request-banner")).to_contain_text("New request from Casey")
        # the chime counts only when the page's audio context runs (a suspended one plays nothing)
        assert await t1.evaluate("() => window.__therapyDashboard.chimes()") >= 1
        assert await t1.evaluate("() => window.__therapyDashboard.soundState()") == "running"
        await expect(t1.locator("#request-banner .badge.minor")).to_have_count(0)
        await shot(t1, "01-dashboard-with-request", readme="therapist-dashboard")

        await t1.get_by_role("button", name="Accept the request from Casey").click()
        await expect(t1.locator("#offer-panel")).to_contain_text("Waiting for them to accept")
        await expect(t2.locator("#pool li.request")).to_have_count(0)
        await expect(t2.locator("#pool-notice")).to_contain_text("taken by another therapist")
        # the slow tab still shows the card; its click comes after the first therapist won
        await t2_slow.get_by_role("button", name="Accept the request from Casey").click()
        await expect(t2_slow.locator("#pool-notice")).to_contain_text("another therapist has already taken")
        await expect(t2_slow.locator("#pool li.request")).to_have_count(0)
        await shot(t2_slow, "02-second-therapist-taken")

        offer = client.locator("#offer")
        await expect(offer).to_be_visible()
        await expect(offer.locator("#offer-name")).to_have_text("Dr Tess Quinn")
        await expect(offer.locator("#offer-bio")).to_have_text("I help people through anxiety and panic.")
        await expect(offer.locator("#offer-rate")).to_have_text("£1.00 per minute")
        await expect(offer.locator("#offer-expertise li")).to_have_count(2)
        await expect(offer.locator("#offer-picture")).to_be_visible()
        assert await client.evaluate("() => document.querySelector('#offer-picture').naturalWidth") > 0
        await shot(client, "03-client-offer-card")
        await t1.context.add_init_script(BANNER_HISTORY)
        await client.get_by_label(re.compile("I accept the terms")).check()
        await client.get_by_label(re.compile("recorded and transcribed")).check()
        await client.get_by_role("button", name="Accept and start the session").click()

        await client.wait_for_url(re.compile(r"/call/\d+$"))
        await t1.wait_for_url(re.compile(r"/call/\d+$"))
        call_id = int(client.url.rsplit("/", 1)[1])
        assert t1.url.endswith(f"/call/{call_id}")
        await asyncio.gather(wait_connected(t1), wait_connected(client))
        await asyncio.gather(remote_video_plays(t1), remote_video_plays(client))
        assert "The client is joining…" in await t1.evaluate("() => window.__bannerTexts"), \
            await t1.evaluate("() => window.__bannerTexts")
        for page in (t1, client):
            await expect(page.locator("#recording")).to_be_visible()
            await expect(page.locator("#conn-state")).to_have_text("connected")
        await client.wait_for_function("() => window.__therapyCall.serverPc?.connectionState === 'connected'")
        await t1.wait_for_function("() => window.__therapyCall.serverPc?.connectionState === 'connected'")
        # both browsers report their connected peer connection, so the first minute (£1.00) is charged at once
        await expect(client.locator("#billing-state")).to_have_text(
            re.compile(r"Balance: £1\d\.00 · about \d+ min of paid time left"))
        assert await t1.locator("#billing-state").is_hidden(), "the therapist's screen shows no client balance"

        # ------------------------------------------------------------ 2. chat both ways, notes, reload
        await client.get_by_label("Message", exact=True).fill("Hello, thank you for seeing me")
        await client.get_by_label("Message", exact=True).press("Enter")
        await expect(t1.locator("#chat-list li")).to_contain_text(["Hello, thank you for seeing me"])
        await t1.get_by_label("Message", exact=True).fill("You are welcome, Casey")
        await t1.get_by_role("button", name="Send").click()
        await expect(client.locator("#chat-list li")).to_have_count(2)
        await expect(client.locator("#chat-list li").nth(1)).to_contain_text("You are welcome, Casey")
        await expect(t1.locator("#chat-list li")).to_have_count(2)

        # the marker sits below the first lines, out of the way of the screenshots (the box shows the top)
        notes = f"Presenting: panic attacks at night.\nPlan: breathing exercises, sleep diary.{chr(10) * 14}{CANARY}"
        await t1.get_by_label(re.compile("Only you can see these notes")).fill(notes)
        await expect(t1.locator("#notes-status")).to_contain_text("Saved", timeout=STEP_TIMEOUT_MS)
        assert await client.locator("#notes-panel, #notes-text").count() == 0
        await expect(client.locator("body")).not_to_contain_text("breathing exercises")
        await t1.locator("#notes-text").evaluate("el => { el.scrollTop = 0; }")

        await client.evaluate("() => { window.__pcBefore = window.__therapyCall.pc; }")
        await t1.reload()
        await expect(t1.locator("#notes-text")).to_have_value(notes)
        await wait_connected(t1)
        # the therapist's (silent) audio reaches the server again: "nothing under the therapist's label" below means
        # the server heard silence, not that it heard nothing
        await t1.wait_for_function("() => window.__therapyCall.serverPc?.connectionState === 'connected'",
                                   timeout=STEP_TIMEOUT_MS)
        await client.wait_for_function("() => window.__therapyCall.pc !== window.__pcBefore"
                                       " && window.__therapyCall.pc.connectionState === 'connected'", timeout=20_000)
        await remote_video_plays(client)
        await expect(t1.locator("#chat-list li")).to_have_count(2)

        # ------------------------------------------------------------ 3. the client's words in the live transcript
        client_lines = t1.locator("#transcript-list li[data-speaker='client']")
        for word in SPEECH_WORDS:
            await expect(t1.locator("#transcript-list")).to_contain_text(word, ignore_case=True,
                                                                         timeout=TRANSCRIPT_TIMEOUT_MS)
        heard = " ".join(await client_lines.all_inner_texts()).lower()
        assert all(word in heard for word in SPEECH_WORDS), heard
        await expect(client_lines.first.locator(".speaker")).to_have_text("Client:")
        assert await t1.locator("#transcript-list li[data-speaker='therapist']").count() == 0
        assert "You:" not in await t1.locator("#transcript-list").inner_text()
        assert await client.locator("#transcript-panel, #transcript-list").count() == 0
        await shot(t1, "04-therapist-call-screen", readme="therapist-call")
        await shot(client, "05-client-call-screen")

        # ------------------------------------------------------------ 4. hang up; the call log
        await t1.get_by_role("button", name="Hang up").click()
        await expect(t1.locator("#ended")).to_be_visible()
        await expect(t1.locator("#ended-text")).to_contain_text("You ended the session")
        await expect(client.locator("#ended")).to_be_visible()
        await expect(client.locator("#ended-text")).to_contain_text("Your therapist ended the session")
        assert await client.evaluate("() => window.__therapyCall.pc.connectionState") == "closed"

        await t1.get_by_role("link", name="See it in the call log").click()
        await t1.wait_for_url(f"**/calls/{call_id}")
        await expect(t1.locator("#detail-title")).to_have_text("Session with Casey")
        await expect(t1.locator("#summary")).to_contain_text("Ended by the therapist")
        transcript = t1.locator("#transcript")
        for word in SPEECH_WORDS:
            await expect(transcript).to_contain_text(word, ignore_case=True)
        await expect(t1.locator("#log-notes")).to_have_value(notes)
        await expect(t1.locator("#chat li")).to_have_count(2)
        await expect(t1.locator("#chat")).to_contain_text("Hello, thank you for seeing me")
        await t1.get_by_label("Search the transcript").fill(SPEECH_WORDS[0])
        await expect(t1.locator("#transcript mark").first).to_have_text(re.compile(SPEECH_WORDS[0], re.IGNORECASE))
        await expect(t1.locator("#search-count")).to_contain_text("lines contain")
        async with t1.expect_download() as download_info:
            await t1.get_by_role("button", name="Text (.txt)").click()
        download = await download_info.value
        assert download.suggested_filename == f"call-{call_id}-transcript.txt"
        text = Path(await download.path()).read_text().lower()
        assert all(word in text for word in SPEECH_WORDS), text
        client_recording = t1.get_by_role("button", name=re.compile("Download the client's recording"))
        await expect(client_recording).not_to_have_count(0)
        async with t1.expect_download() as download_info:
            await client_recording.first.click()
        audio = Path(await (await download_info.value).path()).read_bytes()
        assert audio[:4] == b"OggS" and len(audio) > 1000, audio[:40]
        await shot(t1, "06-call-log")
        await t1.goto("/calls")
        await expect(t1.locator("#clients")).to_contain_text("Casey")
        await expect(t1.locator("#calls-body")).to_contain_text("Ended by the therapist")
        await t1.get_by_label("Words said in any of your sessions").fill(SPEECH_WORDS[1])
        await t1.get_by_role("button", name="Search", exact=True).click()
        found = t1.locator("#search-results > li")
        await expect(found).to_have_count(1)
        await expect(found.get_by_role("link")).to_contain_text("Session with Casey")
        await expect(found.locator("li[data-speaker='client'] mark").first).to_have_text(
            re.compile(SPEECH_WORDS[1], re.IGNORECASE))
        await expect(t1.locator("#search-status")).to_contain_text("in 1 session")

        await client.get_by_role("link", name="See it in the call log").click()
        await client.wait_for_url(f"**/calls/{call_id}")
        await expect(client.locator("#chat li")).to_have_count(2)
        await expect(client.locator("#notes-section")).to_be_hidden()
        await expect(client.locator("#transcript-section")).to_be_hidden()

        # ------------------------------------------------------------ 5. the notes never reached the client
        await received.settle()
        assert any("call.chat" in f for f in received.frames), "the client's websocket frames were recorded"
        assert received.bodies, "the client's responses were recorded"
        assert received.contains(CANARY) == []
        assert CANARY not in server.log_text(), "note text reached the server's log"
        await client_context.close()

    assert problems.errors == [], "\n".join(problems.errors)
