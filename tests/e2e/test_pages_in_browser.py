"""The pages in real Chromium, beyond the main scenario: every page fits a phone's screen without errors, the
e-mailed links explain a bad token, signing in works by keyboard alone, and the call screen explains a refused or a
missing camera and microphone while the chat still works. Screenshots of the pages on a phone go to test-artifacts/."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote_plus

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Route, expect

from e2e_support import (
    HEADLESS_ARGS, PASSWORD, PHONE, E2EServer, Launch, PageProblems, chromium_processes, fits_the_screen, make_people,
    rest, running_server, shot,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    yield from running_server(tmp_path_factory)


@pytest.fixture
async def launch(request: pytest.FixtureRequest) -> AsyncIterator[Launch]:
    async with chromium_processes(request) as launch:
        yield launch


async def signed_in_page(browser: Browser, server: E2EServer, token: str, problems: PageProblems, name: str,
                         viewport: dict[str, int] = PHONE) -> Page:
    context = await browser.new_context(base_url=server.url, viewport=viewport)
    context.set_default_timeout(15_000)
    await context.add_init_script(f"sessionStorage.setItem('therapy.token', {token!r})")
    page = await context.new_page()
    problems.watch(page, name)
    return page


async def test_pages_fit_a_phone_explain_bad_links_and_sign_in_works_by_keyboard(
    e2e_server: E2EServer, launch: Launch,
) -> None:
    server, problems = e2e_server, PageProblems()
    browser = await launch(HEADLESS_ARGS)
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Kim", therapist="Dr Ann Lee", client_credit_pence=2000)
    context = await browser.new_context(base_url=server.url, viewport=PHONE)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    problems.watch(page, "public")

    for path in ("/#register", "/#apply"):
        await page.goto(path)
        await expect(page.locator('[role="tab"][aria-selected="true"]')).to_have_id(f"tab-{path[2:]}")
        await fits_the_screen(page)
        await shot(page, f"17-phone-{path[2:]}")
    await page.goto("/verify-email#token=not-a-real-token")
    await expect(page.locator("#verify-state")).to_contain_text("expired or was already used")
    assert "#" not in page.url, "the token is taken out of the address bar"
    await page.goto("/guardian-consent#token=not-a-real-token")
    await expect(page.locator("#consent-state")).to_contain_text("expired or was already used")
    await page.goto("/reset-password")
    await expect(page.locator("#reset-missing")).to_be_visible()
    await fits_the_screen(page)

    # keyboard only: skip link, brand, the selected tab (arrows switch tabs), e-mail, password, Enter
    await page.goto("/")
    for _ in range(3):
        await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.id") == "tab-signin"
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#panel-register")).to_be_visible()
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator("#panel-signin")).to_be_visible()
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.id") == "signin-email"
    await page.keyboard.type(made["client_email"])
    await page.keyboard.press("Tab")
    await page.keyboard.type("wrong password!")
    await page.keyboard.press("Enter")
    await expect(page.locator("#signin-form .form-error")).to_contain_text("do not match")
    await page.locator("#signin-password").fill(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/home")
    await expect(page.locator("#start")).to_be_visible()
    await fits_the_screen(page)
    # nobody is available: crisis resources at once, and the request can be withdrawn
    await page.get_by_label("What would you like to talk about?").fill("I cannot sleep")
    await page.get_by_role("button", name="Talk to someone now").click()
    await expect(page.locator("#waiting-text")).to_contain_text("No therapist is online")
    await expect(page.locator("#crisis li")).not_to_have_count(0)
    await shot(page, "18-phone-client-waiting")
    await page.get_by_role("button", name="Cancel my request").click()
    await expect(page.locator("#start")).to_be_visible()
    await page.goto("/calls")
    await expect(page.locator("#calls-empty")).to_be_visible()
    await fits_the_screen(page)

    therapist = await signed_in_page(browser, server, made["therapist"]["token"], problems, "therapist")
    for path in ("/dashboard", "/calls"):
        await therapist.goto(path)
        await expect(therapist.locator("#who")).to_contain_text("Dr Ann Lee")
        await fits_the_screen(therapist)
    await therapist.goto("/dashboard")
    # the form is filled from the account once the page knows who is signed in (the name shows at that moment):
    # typing earlier would be overwritten
    await expect(therapist.locator("#who")).to_contain_text("Dr Ann Lee")
    await therapist.get_by_label("Bio", exact=True).fill("Twenty years of helping people with grief.")
    await therapist.get_by_label("Areas of expertise (separated by commas)").fill("grief, loss")
    await therapist.get_by_role("button", name="Save changes").click()
    await expect(therapist.locator("#account-status")).to_have_text("Changes saved.")
    await therapist.reload()
    await expect(therapist.get_by_label("Bio", exact=True)).to_have_value("Twenty years of helping people with grief.")
    await expect(therapist.get_by_label("Areas of expertise (separated by commas)")).to_have_value("grief, loss")
    await shot(therapist, "19-phone-therapist-dashboard")
    admin = await signed_in_page(browser, server, made["admin"]["token"], problems, "admin")
    await admin.goto("/admin")
    await expect(admin.locator("#test-therapist option")).not_to_have_count(0)
    await fits_the_screen(admin)
    await admin.get_by_label("Approved therapist").select_option(label=f"Dr Ann Lee ({made['therapist_email']})")
    await admin.get_by_role("button", name="Open a test session").click()
    await expect(admin.locator("#test-result-text")).to_contain_text(re.compile(r"Test session \d+ is open"))
    await shot(admin, "20-phone-admin")
    # a page for another role sends the user to their own start page
    await admin.goto("/dashboard")
    await admin.wait_for_url("**/admin")
    assert problems.errors == [], "\n".join(problems.errors)


async def test_a_form_sent_before_its_page_is_ready_is_held_and_never_puts_the_password_in_the_address(
    e2e_server: E2EServer, launch: Launch,
) -> None:
    """The sign-in script is slow to arrive (a slow network): the user types and presses "Sign in" meanwhile. The
    browser does not send the form itself (that would reload the page with the password in the address); the
    sign-in goes through once the script has loaded."""
    server, problems = e2e_server, PageProblems()
    browser = await launch(HEADLESS_ARGS)
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Ida", therapist="Dr Cy Hale")
    context = await browser.new_context(base_url=server.url, viewport=PHONE)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    problems.watch(page, "public")
    script_may_load = asyncio.Event()

    async def slow_script(route: Route) -> None:
        await script_may_load.wait()
        await route.continue_()

    await page.route("**/static/js/pages/signin.js", slow_script)
    addresses: list[str] = []
    page.on("request", lambda request: addresses.append(request.url))
    await page.goto("/", wait_until="commit")
    await page.get_by_label("E-mail address").first.fill(made["client_email"])
    await page.locator("#signin-password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_timeout(300)  # a native submission would have started loading the next page by now
    assert await page.evaluate("() => window.__pageReady") is None, "the sign-in script has not run yet"
    script_may_load.set()
    await page.wait_for_url("**/home")
    await expect(page.locator("#start")).to_be_visible()
    leaked = [url for url in addresses if "password=" in url or quote_plus(PASSWORD) in url or PASSWORD in url]
    assert leaked == [], "the form's fields went into an address"
    assert f"{server.url}/?" not in " ".join(addresses), "the browser sent the form itself"
    assert problems.errors == [], "\n".join(problems.errors)


async def test_call_screen_explains_a_refused_or_missing_camera_and_the_chat_still_works(
    e2e_server: E2EServer, launch: Launch,
) -> None:
    server, problems = e2e_server, PageProblems()
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Kim", therapist="Dr Ann Lee", client_credit_pence=2000)
        opened = await rest(http, server, "POST", "/api/admin/test-calls", made["admin"]["token"], json={
            "therapist_id": made["therapist"]["user"]["id"], "recording_consent": True})
    call_id = opened["call"]["id"]
    # no --use-fake-ui-for-media-stream: the browser refuses; no fake devices: there are none
    refusing = await launch(HEADLESS_ARGS + ["--use-fake-device-for-media-stream"])
    without = await launch(HEADLESS_ARGS + ["--use-fake-ui-for-media-stream"])
    therapist = await signed_in_page(refusing, server, made["therapist"]["token"], problems, "therapist",
                                     {"width": 1280, "height": 900})
    client = await signed_in_page(without, server, opened["demo_client"]["token"], problems, "demo client")
    await therapist.goto(f"/call/{call_id}")
    await client.goto(f"/call/{call_id}")
    await expect(therapist.locator("#media-error")).to_contain_text("You did not allow access to your camera")
    await expect(client.locator("#media-error")).to_contain_text("No camera or microphone was found")
    for page in (therapist, client):
        await expect(page.locator("#mute")).to_be_disabled()
        await expect(page.locator("#mute")).to_have_text("No microphone")
    await expect(client.locator("#recording-text")).to_contain_text("your microphone is not available")

    await therapist.get_by_label("Message", exact=True).fill("Can you read this?")
    await therapist.get_by_label("Message", exact=True).press("Enter")
    await expect(client.locator("#chat-list")).to_contain_text("Can you read this?")
    await client.get_by_label("Message", exact=True).fill("Yes, loud and clear")
    await client.get_by_role("button", name="Send").click()
    await expect(therapist.locator("#chat-list")).to_contain_text("Yes, loud and clear")
    await expect(therapist.locator("#recording")).to_be_visible()
    await client.get_by_role("button", name="Stop recording").click()
    await expect(client.locator("#recording-off")).to_contain_text("stopped by you")
    await expect(therapist.locator("#recording-off")).to_contain_text("stopped by the client")
    for page in (therapist, client):
        await expect(page.locator("#recording")).to_be_hidden()
    await shot(therapist, "07-call-camera-refused")

    await client.get_by_role("button", name="Hang up").click()
    await expect(therapist.locator("#ended-text")).to_contain_text("The client ended the session")
    await expect(client.locator("#ended-text")).to_contain_text("You ended the session")
    assert problems.errors == [], "\n".join(problems.errors)
