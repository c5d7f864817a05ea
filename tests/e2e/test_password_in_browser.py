"""Changing the password from the account details, in real Chromium: the client's home and the therapist's
dashboard each have the form; a wrong current password is explained, a right one changes it and keeps the page
signed in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from playwright.async_api import expect

from e2e_support import (
    HEADLESS_ARGS, PASSWORD, E2EServer, Launch, PageProblems, chromium_processes, make_people, rest, running_server,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    yield from running_server(tmp_path_factory)


@pytest.fixture
async def launch(request: pytest.FixtureRequest) -> AsyncIterator[Launch]:
    async with chromium_processes(request) as launch:
        yield launch


async def test_the_password_is_changed_from_the_account_details(e2e_server: E2EServer, launch: Launch) -> None:
    server, problems = e2e_server, PageProblems()
    browser = await launch(HEADLESS_ARGS)
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Robin Hale", therapist="Dr Ann Lee")
        for who, path in (("client", "/home"), ("therapist", "/dashboard")):
            context = await browser.new_context(base_url=server.url)
            context.set_default_timeout(15_000)
            await context.add_init_script(f"sessionStorage.setItem('therapy.token', {made[who]['token']!r})")
            page = await context.new_page()
            problems.watch(page, who)
            await page.goto(path)
            if who == "therapist":  # its Socket.IO client sends the token through the `auth` callback
                await expect(page.locator("#conn")).to_have_attribute("data-state", "online")
            form = page.locator("#password-form")
            await form.get_by_label("Current password").fill("not the password")
            await form.get_by_label("New password (at least 10 characters)").fill("a new passphrase 99")
            await form.get_by_role("button", name="Change password").click()
            await expect(form.locator(".form-error")).to_have_text("That is not your current password.")
            await expect(form.get_by_label("Current password")).to_have_attribute("aria-invalid", "true")

            await form.get_by_label("Current password").fill(PASSWORD)
            await form.get_by_role("button", name="Change password").click()
            await expect(form.get_by_role("status")).to_contain_text("Password changed")
            await page.reload()  # the page's own token still works, for REST and for the socket
            await expect(page.locator("#password-form")).to_be_visible()
            if who == "therapist":
                await expect(page.locator("#conn")).to_have_attribute("data-state", "online")
            assert page.url.endswith(path)
            email = made[f"{who}_email"]
            await rest(http, server, "POST", "/api/auth/signin", json={"email": email, "password": "a new passphrase 99"})
            await context.close()
    assert not problems.errors, problems.errors
