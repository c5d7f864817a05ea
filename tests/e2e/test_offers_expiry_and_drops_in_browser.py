"""What happens around the main scenario, in real Chromium against a server whose requests expire and whose calls end
quickly (THERAPY_REQUEST_TTL_S, THERAPY_CALL_REJOIN_GRACE_S):

1. A client under 18 (a guardian's consent recorded) asks for a session: both therapists see the request marked
   "Under 18", in the card and in the banner. One therapist's reloaded dashboard is silent until "Turn on sound" (no
   chime is counted while the page cannot play one). The first therapist accepts and, holding the offer, is told new
   requests wait; the client declines: the request goes back to the pool (the other therapist sees it again, with the
   chime), the client is waiting again; nobody takes it, it expires, and the client sees the crisis resources. A
   page of ours opened in a new tab from the client's page stays signed in.
2. A therapist whose browser has only the microphone allowed joins a call on a phone: the call screen says the
   camera is blocked, and the microphone still reaches the client. Their dashboard in another tab says they are in
   a session. The client closes their page: the therapist is told the client dropped and may return, then that the
   session ended; the call log says the client's connection dropped. Both pages fit the phone's screen.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from e2e_support import (
    HEADLESS_ARGS, PASSWORD, PHONE, E2EServer, PageProblems, chromium_args, chromium_processes, fits_the_screen,
    make_people, rest, running_server, shot, silence_wav, verify_email, wait_connected,
)

pytestmark = pytest.mark.slow

REQUEST_TTL_S = 8
REJOIN_GRACE_S = 4
STEP_TIMEOUT_MS = 15_000
DESKTOP = {"width": 1280, "height": 900}

#: Headless Chromium lets any page play sound at once; a desktop browser keeps a page's audio suspended until the
#: page resumes it during a click (after a reload, say). This keeps the page's audio contexts suspended until the page
#: calls resume(), as they would be there.
SUSPENDED_AUDIO = """
{
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    constructor(...args) {
      super(...args);
      this.allowed = false;
      const hold = () => { if (!this.allowed && this.state === "running") this.suspend(); };
      this.addEventListener("statechange", hold);
      hold();
    }
    resume() {
      this.allowed = true;
      return super.resume();
    }
  };
}
"""


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    yield from running_server(tmp_path_factory, {
        "THERAPY_REQUEST_TTL_S": str(REQUEST_TTL_S), "THERAPY_OFFER_TTL_S": "5",
        "THERAPY_CALL_REJOIN_GRACE_S": str(REJOIN_GRACE_S)})


@pytest.fixture
async def browsers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Browser, Browser]]:
    """(a browser that allows its fake camera and microphone, one that allows only what a test grants it)."""
    async with chromium_processes(request) as launch:
        yield (await launch(chromium_args(silence_wav(tmp_path / "silence.wav"))),
               await launch(HEADLESS_ARGS + ["--use-fake-device-for-media-stream"]))


async def open_page(browser: Browser, server: E2EServer, problems: PageProblems, name: str, *, token: str | None = None,
                    viewport: dict[str, int] = DESKTOP, init_script: str | None = None) -> Page:
    """A page in a context of its own, signed in for every page of the context when `token` is given."""
    context = await browser.new_context(base_url=server.url, viewport=viewport)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    if token:
        await context.add_init_script(f"sessionStorage.setItem('therapy.token', {token!r})")
    if init_script:
        await context.add_init_script(init_script)
    page = await context.new_page()
    problems.watch(page, name)
    return page


async def test_a_declined_offer_goes_back_to_the_pool_and_an_expired_request_shows_crisis_resources(
    e2e_server: E2EServer, browsers: tuple[Browser, Browser],
) -> None:
    server, (browser, _) = e2e_server, browsers
    problems = PageProblems()
    today = date.today()
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Sam Young", therapist="Dr Ann Lee", client_credit_pence=2000,
                                 client_born=today.replace(year=today.year - 16).isoformat())
        second = await rest(http, server, "POST", "/api/auth/apply", json={
            "email": f"theo-{made['client_email']}", "password": PASSWORD, "display_name": "Dr Theo Marsh",
            "qualifications": "PhD", "registration_body": "UKCP", "registration_number": "7",
            "insurance_provider": "Hiscox", "insurance_expiry": "2031-06-30", "rate_pence_per_minute": 100})
        await verify_email(http, server, f"theo-{made['client_email']}")  # approval needs a verified address
        await rest(http, server, "POST", f"/api/admin/applications/{second['user']['id']}/approve",
                   made["admin"]["token"])
        # availability is kept by the server: these dashboards open as after a reload, with nothing clicked yet
        for token in (made["therapist"]["token"], second["token"]):
            await rest(http, server, "PUT", "/api/me/availability", token, json={"available": True})

    first = await open_page(browser, server, problems, "first therapist", token=made["therapist"]["token"])
    other = await open_page(browser, server, problems, "second therapist", token=second["token"],
                            init_script=SUSPENDED_AUDIO)
    for page in (first, other):
        await page.goto("/dashboard")
        await expect(page.locator("#pool-empty")).to_be_visible()
    sound_on = other.get_by_role("button", name="Turn on sound")
    await expect(sound_on).to_be_visible()
    assert await other.evaluate("() => window.__therapyDashboard.soundState()") == "suspended"

    # the client's sign-in is in this tab's sessionStorage only (no init script that every new tab would run)
    client = await open_page(browser, server, problems, "client", viewport=PHONE)
    await client.goto("/")
    await client.evaluate(f"() => sessionStorage.setItem('therapy.token', {made['client']['token']!r})")
    await client.goto("/home")
    await client.get_by_label("What would you like to talk about?").fill("Exams are overwhelming me")
    await client.get_by_role("button", name="Talk to someone now").click()
    await expect(client.locator("#waiting")).to_be_visible()
    # from here the request expires REQUEST_TTL_S later: the offer and the decline come well before

    for page in (first, other):
        card = page.locator("#pool li.request")
        await expect(card).to_have_count(1)
        await expect(card.locator(".badge.minor")).to_have_text("Under 18")
    await expect(other.locator("#request-banner")).to_contain_text("New request from Sam Young")
    await expect(other.locator("#request-banner .badge.minor")).to_have_text("Under 18")
    assert await other.evaluate("() => window.__therapyDashboard.chimes()") == 0, "a suspended page played nothing"
    await sound_on.click()
    await expect(other.locator("#sound-off")).to_be_hidden()
    assert await other.evaluate("() => window.__therapyDashboard.soundState()") == "running"

    await first.get_by_role("button", name="Accept the request from Sam Young").click()
    await expect(first.locator("#offer-panel")).to_contain_text("Waiting for them to accept")
    await expect(first.locator("#busy-text")).to_contain_text("new requests will show here when it ends")
    await expect(other.locator("#pool li.request")).to_have_count(0)
    await expect(client.locator("#offer-name")).to_have_text("Dr Ann Lee")
    await client.get_by_role("button", name="Decline").click()

    await expect(client.locator("#waiting")).to_be_visible()
    await expect(client.locator("#waiting-notice")).to_contain_text("You declined")
    await expect(first.locator("#pool-notice")).to_contain_text("Sam Young declined")
    await expect(first.locator("#busy-text")).to_be_hidden()
    await expect(first.locator("#pool-empty")).to_be_visible()  # declined for them: not offered to them again
    await expect(other.locator("#pool li.request")).to_have_count(1)
    await expect(other.locator("#request-banner")).to_contain_text("New request from Sam Young")
    await expect(other.locator("#pool-notice")).to_contain_text("Sam Young's request is back")
    assert await other.evaluate("() => window.__therapyDashboard.chimes()") == 1
    await shot(other, "12-dashboard-request-back-after-decline")

    # nobody takes it: it expires, and the client gets the crisis resources
    crisis = client.locator("#crisis")
    await expect(crisis).to_be_visible(timeout=(REQUEST_TTL_S + 10) * 1000)
    await expect(client.locator("#crisis-text")).to_contain_text("No therapist was free in time")
    await expect(crisis.locator("li")).not_to_have_count(0)
    await expect(client.locator("#start")).to_be_visible()
    await expect(other.locator("#pool li.request")).to_have_count(0)
    await expect(other.locator("#pool-notice")).to_contain_text("Sam Young's request expired")
    await shot(client, "13-client-request-expired")

    # a page of ours opened in a new tab from the client's page is signed in (a noopener one would not be)
    async with client.context.expect_page() as opened:
        await client.evaluate("async () => (await import('/static/js/lib/ui.js')).openSameSiteWindow('/wallet')")
    wallet = await opened.value
    problems.watch(wallet, "client's wallet tab")
    await expect(wallet.locator("#who")).to_contain_text("Sam Young")
    assert wallet.url.endswith("/wallet")
    async with client.context.expect_page() as opened:
        await client.evaluate("() => window.open('/wallet', '_blank', 'noopener')")
    signed_out = await opened.value
    await signed_out.wait_for_url(re.compile(r"/\?next=%2Fwallet$"))
    assert problems.errors == [], "\n".join(problems.errors)


async def stats_show(page: Page, kind: str, counter: str) -> None:
    """Wait until the page's peer connection has an RTP stream of `kind` (outbound-rtp, inbound-rtp) with audio
    packets counted in `counter`."""
    await page.wait_for_function("""async ([kind, counter]) => {
        const stats = await window.__therapyCall.pc.getStats();
        return [...stats.values()].some((s) => s.type === kind && s.kind === "audio" && s[counter] > 0);
    }""", arg=[kind, counter], timeout=STEP_TIMEOUT_MS)


async def test_a_blocked_camera_keeps_the_microphone_and_a_dropped_client_may_return_until_the_call_ends(
    e2e_server: E2EServer, browsers: tuple[Browser, Browser],
) -> None:
    server, (browser, asking) = e2e_server, browsers
    problems = PageProblems()
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Kim", therapist="Dr Bo Hart")
        await rest(http, server, "PUT", "/api/me/availability", made["therapist"]["token"], json={"available": True})
        opened: dict[str, Any] = await rest(http, server, "POST", "/api/admin/test-calls", made["admin"]["token"],
                                            json={"therapist_id": made["therapist"]["user"]["id"]})
    call_id = opened["call"]["id"]

    # no --use-fake-ui-for-media-stream: only what is granted is allowed, and the camera is not
    therapist = await open_page(asking, server, problems, "therapist", token=made["therapist"]["token"], viewport=PHONE)
    await therapist.context.grant_permissions(["microphone"], origin=server.url)
    client = await open_page(browser, server, problems, "demo client", token=opened["demo_client"]["token"])
    await therapist.goto(f"/call/{call_id}")
    await client.goto(f"/call/{call_id}")
    await expect(therapist.locator("#media-error")).to_contain_text(
        "Your camera is off or blocked — the other person can still hear you")
    await expect(therapist.locator("#camera")).to_have_text("No camera")
    await expect(therapist.locator("#mute")).to_be_enabled()
    await wait_connected(therapist)
    await wait_connected(client)
    assert await therapist.evaluate(
        "() => document.querySelector('#local-video').srcObject.getAudioTracks().map((t) => t.readyState)") == ["live"]
    await stats_show(therapist, "outbound-rtp", "packetsSent")
    await stats_show(client, "inbound-rtp", "packetsReceived")
    await fits_the_screen(therapist)
    await shot(therapist, "14-call-microphone-only-phone")

    dashboard = await therapist.context.new_page()
    problems.watch(dashboard, "therapist's dashboard")
    await dashboard.goto("/dashboard")
    await expect(dashboard.locator("#busy-text")).to_have_text(
        "You're in a session — new requests will show here when it ends.")
    await expect(dashboard.locator("#in-call-banner")).to_be_visible()
    await expect(dashboard.locator("#pool-empty")).to_be_hidden()
    await dashboard.close()

    await client.close()
    await expect(therapist.locator("#peer-banner")).to_contain_text("The client dropped and may return")
    await shot(therapist, "15-call-client-dropped")
    await expect(therapist.locator("#ended-text")).to_contain_text(
        re.compile("The session ended because .* for too long"), timeout=(REJOIN_GRACE_S + 15) * 1000)
    await therapist.get_by_role("link", name="See it in the call log").click()
    await therapist.wait_for_url(f"**/calls/{call_id}")
    await expect(therapist.locator("#summary")).to_contain_text("Ended: the client's connection dropped")
    await fits_the_screen(therapist)
    await shot(therapist, "16-call-log-phone")
    assert problems.errors == [], "\n".join(problems.errors)


async def test_a_click_on_accept_survives_a_fresh_snapshot_arriving_mid_click(
    e2e_server: E2EServer, browsers: tuple[Browser, Browser],
) -> None:
    """The therapist presses Accept on a freshly loaded dashboard; before they release it, a fresh pool snapshot
    arrives (as after their availability changed, or a reconnect) that still lists the request. Nothing moves the
    button from under the pointer, and the click goes through. It used to do nothing in two ways: the card was
    rebuilt, so the release landed on a copy; and the "Sound is off" notice, shown above the cards while the page's
    audio is suspended, went away when the sound came on (at the press, or by itself a moment after loading here)
    and moved the cards up."""
    server, (browser, _) = e2e_server, browsers
    problems = PageProblems()
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Kim Park", therapist="Dr Lu Chen", client_credit_pence=2000)
        await rest(http, server, "PUT", "/api/me/availability", made["therapist"]["token"], json={"available": True})
    routes: list[Any] = []
    added: list[dict[str, Any]] = []

    def watch_the_pool(page_side: Any) -> None:
        routes.append(page_side)
        server_side = page_side.connect_to_server()

        def to_page(message: str | bytes) -> None:
            if isinstance(message, str) and message.startswith('42["pool.request_added"'):
                added.append(json.loads(message[2:])[1]["request"])
            page_side.send(message)

        server_side.on_message(to_page)

    therapist = await open_page(browser, server, problems, "therapist", token=made["therapist"]["token"])
    await therapist.route_web_socket(re.compile(r"/socket\.io/"), watch_the_pool)
    await therapist.goto("/dashboard")
    await expect(therapist.locator("#pool-empty")).to_be_visible()
    client = await open_page(browser, server, problems, "client", token=made["client"]["token"], viewport=PHONE)
    await client.goto("/home")
    await client.get_by_label("What would you like to talk about?").fill("Cannot stop worrying")
    await client.get_by_role("button", name="Talk to someone now").click()
    accept = therapist.get_by_role("button", name="Accept the request from Kim Park")
    await expect(accept).to_be_visible()

    [card] = added
    # the snapshot lists the request again, and one more (a marker that shows when the page has applied it)
    marker = {**card, "id": card["id"] + 10_000, "client": {**card["client"], "display_name": "Snapshot Marker"}}
    snapshot = {"available": True, "busy": None, "requests": [card, marker], "offers": []}
    box = await accept.bounding_box()
    assert box is not None
    await therapist.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await therapist.mouse.down()
    routes[-1].send("42" + json.dumps(["pool.snapshot", snapshot]))
    await expect(therapist.get_by_role("button", name="Accept the request from Snapshot Marker")).to_be_visible()
    await therapist.mouse.up()
    await expect(therapist.locator("#offer-panel")).to_contain_text("Waiting for them to accept")
    await expect(client.locator("#offer-name")).to_have_text("Dr Lu Chen")
    await client.get_by_role("button", name="Decline").click()  # leaves nothing open for the module's next test
    await expect(client.locator("#waiting")).to_be_visible()
    await client.get_by_role("button", name="Cancel my request").click()
    assert problems.errors == [], "\n".join(problems.errors)
