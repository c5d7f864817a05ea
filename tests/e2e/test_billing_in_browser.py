"""The billing screens in real Chromium, against the real server in its test mode (the local Stripe-compatible server,
its Stripe.js stand-in and its signed webhooks, as `python -m signalling` runs with no Stripe keys).

1. A client tops up £20 by card in Stripe's card Element and sees the balance change without a reload; a declined
   card says so and changes nothing; another card then pays the same top-up; the history and its CSV list the
   top-ups; unused balance goes back to the card.
2. A therapist with available earnings asks for a withdrawal and sees it with its state; cancels a second one; an
   admin marks the first one's invoice received and sees the payout date (the therapist's page follows live), and
   paying it before that date is refused with the reason; the therapist goes through Stripe Connect onboarding (the
   stand-in's hosted page) and comes back to payouts ready.
3. A paid session: an admin credits the client's wallet; both browsers report their connected peer connection, so
   the first minute is charged at once; the client sees the paid time left, both see the low-balance warning, and
   the session ends when the money runs out, saying so; the admin refunds part of the charge, which the client's
   wallet and the therapist's earnings show.

Screenshots of the wallet and the earnings page go to test-artifacts/ (docs/screenshots/ holds copies).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from e2e_support import (
    PASSWORD, PHONE, E2EServer, PageProblems, chromium_args, chromium_processes, fits_the_screen, go_available,
    ledger_earnings, make_people, rest, running_server, shot, silence_wav, wait_connected,
)

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1100, "height": 900}
VISA = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"
#: How long a paid session may take to run out of its one paid minute (the server's real clock: a minute and a bit).
SESSION_END_TIMEOUT_MS = 100_000


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    yield from running_server(tmp_path_factory)


@pytest.fixture
async def browser(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Browser]:
    """One Chromium process with a fake camera and a silent fake microphone (every party here may join a call)."""
    async with chromium_processes(request) as launch:
        yield await launch(chromium_args(silence_wav(tmp_path / "silence.wav")))


async def page_for(browser: Browser, server: E2EServer, token: str, problems: PageProblems, name: str,
                   viewport: dict[str, int] = DESKTOP) -> Page:
    context = await browser.new_context(base_url=server.url, viewport=viewport, locale="en-GB", accept_downloads=True)
    context.set_default_timeout(15_000)
    await context.add_init_script(f"sessionStorage.setItem('therapy.token', {token!r})")
    page = await context.new_page()
    problems.watch(page, name)
    return page


async def enter_card(page: Page, number: str) -> None:
    """Type a card into Stripe's card Element: its fields are in Stripe's iframe, not in the page."""
    card = page.frame_locator("#card-element iframe")
    await card.get_by_label("Credit or debit card number").fill(number)
    await card.get_by_label("Credit or debit card expiration date").fill("12 / 34")
    await card.get_by_label("Credit or debit card CVC/CVV").fill("123")


def detail(page: Page, term: str) -> Any:
    """The value beside `term` in the admin's summary of a session's charges."""
    return page.locator(f"#call-summary dt:text-is('{term}') + dd")


def long_day(iso: str) -> re.Pattern[str]:
    """How the pages write a payout date (en-GB): "Friday 16 January 2026" (some ICU versions put a comma in)."""
    d = date.fromisoformat(iso)
    return re.compile(rf"{d:%A},? {d.day} {d:%B} {d.year}")


async def test_a_client_tops_up_by_card_and_sees_the_balance_change_live_and_a_declined_card_changes_nothing(
    e2e_server: E2EServer, browser: Browser,
) -> None:
    server, problems = e2e_server, PageProblems()
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Robin", therapist="Dr Mo Reyes")
        token = made["client"]["token"]
        page = await page_for(browser, server, token, problems, "client")
        await page.goto("/wallet")
        await expect(page.locator("#test-mode")).to_contain_text("TEST MODE — no money moves")
        await expect(page.locator("#balance")).to_have_text("£0.00")
        await expect(page.locator("#topup-limits")).to_contain_text("Between £5.00 and £500.00")
        # only the wallet's policy lets in the Stripe server (its Stripe.js, its card frame, its API); other pages none
        config = (await rest(http, server, "GET", "/api/billing/wallet", token))["config"]
        assert config["test_mode"] is True and config["payments_available"] is True
        stripe_origin = urlsplit(config["stripe_js_url"])._replace(path="", query="", fragment="").geturl()
        async with http.get(server.url + "/wallet") as wallet_page, http.get(server.url + "/home") as home_page:
            wallet_policy = wallet_page.headers["Content-Security-Policy"]
            home_policy = home_page.headers["Content-Security-Policy"]
        for directive in ("script-src", "frame-src", "connect-src"):
            assert re.search(rf"{directive} [^;]*{re.escape(stripe_origin)}", wallet_policy), wallet_policy
        assert stripe_origin not in home_policy and "frame-ancestors 'none'" in wallet_policy
        # the card fields are Stripe's: in its iframe, out of reach of the page's own scripts
        assert await page.locator("#card-element input").count() == 0
        card_number = page.frame_locator("#card-element iframe").get_by_label("Credit or debit card number")
        await expect(card_number).to_be_visible()
        await page.evaluate("() => { window.__sameDocument = true; }")

        # ------------------------------------------------------------ £20 with 4242…: the webhook credits it, live
        await page.locator("#topup-form").get_by_label("Amount in pounds").fill("20")
        await enter_card(page, VISA)
        await page.get_by_role("button", name="Top up").click()
        await expect(page.locator("#balance")).to_have_text("£20.00")
        await expect(page.locator("#topup-status")).to_contain_text("£20.00 was added to your wallet")
        assert await page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
        history = page.locator("#history tr")
        await expect(history.first).to_contain_text("Top-up by card")
        await expect(history.first).to_contain_text("+£20.00")
        await expect(page.locator("#balance-minutes")).to_contain_text(
            "about 20 minutes at a typical rate of £1.00 per minute")

        # ------------------------------------------------------------ a declined card: a clear message, no money
        await page.locator("#topup-form").get_by_label("Amount in pounds").fill("10")
        await enter_card(page, DECLINED)
        await page.get_by_role("button", name="Top up").click()
        await expect(page.locator("#topup-status")).to_contain_text("Your card was declined.")
        await expect(page.locator("#topup-status")).to_contain_text("your balance is unchanged")
        # the failure's webhook has been acted on once the recent payments show it failed
        failed = page.locator("#topups li").first
        await expect(failed).to_have_attribute("data-status", "failed")
        await expect(failed).to_contain_text("Your card was declined.")
        await expect(page.locator("#balance")).to_have_text("£20.00")
        wallet = await rest(http, server, "GET", "/api/billing/wallet", token)
        assert wallet["wallet"]["balance_pence"] == 2000
        await expect(history).to_have_count(1)

        # another card pays the same top-up (the same PaymentIntent, confirmed again)
        await enter_card(page, VISA)
        await page.get_by_role("button", name="Top up").click()
        await expect(page.locator("#balance")).to_have_text("£30.00")
        await expect(failed).to_have_attribute("data-status", "succeeded")
        await expect(history).to_have_count(2)
        await expect(history.first).to_contain_text("+£10.00")
        assert await page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
        await shot(page, "08-client-wallet", readme="client-wallet")

        # ------------------------------------------------------------ the CSV, fetched with the token and saved
        async with page.expect_download() as download_info:
            await page.get_by_role("button", name="Download CSV").click()
        download = await download_info.value
        assert download.suggested_filename == "transactions.csv"
        rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        assert [(r["type"], r["amount_gbp"], r["account"]) for r in rows] == [
            ("topup", "20.00", "client_wallet"), ("topup", "10.00", "client_wallet")]

        # ------------------------------------------------------------ unused balance back to the card
        await page.locator("#refund-form").get_by_label("Amount in pounds").fill("5")
        await page.get_by_role("button", name="Refund to my card").click()
        await expect(page.locator("#refund-status")).to_have_text("£5.00 is on its way back to your card.")
        await expect(page.locator("#balance")).to_have_text("£25.00")
        await expect(history.first).to_contain_text("Refund to your card")
        await expect(history.first).to_contain_text("−£5.00")

        await page.set_viewport_size(PHONE)
        await fits_the_screen(page)
    assert problems.errors == [], "\n".join(problems.errors)


async def test_a_therapist_requests_a_withdrawal_and_an_admin_marks_its_invoice_received(
    e2e_server: E2EServer, browser: Browser,
) -> None:
    server, problems = e2e_server, PageProblems()
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Robin", therapist="Dr Mo Reyes")
        therapist_id = made["therapist"]["user"]["id"]
        await ledger_earnings(server, therapist_id, 3000)
        therapist = await page_for(browser, server, made["therapist"]["token"], problems, "therapist")
        await therapist.goto("/dashboard")
        await therapist.get_by_role("link", name="Earnings").click()
        await therapist.wait_for_url("**/earnings")
        await expect(therapist.locator("#available")).to_have_text("£30.00")
        await expect(therapist.locator("#test-mode")).to_contain_text("TEST MODE — no money moves")
        await expect(therapist.locator("#connect-state")).to_contain_text("Not set up")
        await expect(therapist.get_by_role("button", name="Set up payouts with Stripe")).to_be_visible()

        await therapist.get_by_label("Amount in pounds").fill("25")
        await therapist.get_by_role("button", name="Request withdrawal").click()
        await expect(therapist.locator("#withdraw-status")).to_contain_text("of £25.00 requested")
        first = therapist.locator("#withdrawals tr").first
        await expect(first).to_contain_text("£25.00")
        await expect(first.locator(".badge")).to_have_text("Invoice requested")
        await expect(first).to_contain_text("Send us your invoice for £25.00")
        await expect(therapist.locator("#available")).to_have_text("£5.00")
        await expect(therapist.locator("#withdrawing")).to_have_text("£25.00")
        withdrawal_id = int(await first.get_attribute("data-withdrawal-id") or 0)

        # a second one, cancelled while it waits for its invoice: the money is available again
        await therapist.get_by_label("Amount in pounds").fill("5")
        await therapist.get_by_role("button", name="Request withdrawal").click()
        await expect(therapist.locator("#withdrawals tr")).to_have_count(2)
        await expect(therapist.locator("#available")).to_have_text("£0.00")
        second = int(await therapist.locator("#withdrawals tr").first.get_attribute("data-withdrawal-id") or 0)
        assert second != withdrawal_id
        await therapist.get_by_role("button", name=f"Cancel withdrawal W-{second}").click()
        await expect(therapist.locator(f"[data-withdrawal-id='{second}'] .badge")).to_have_text("Cancelled")
        await expect(therapist.locator("#available")).to_have_text("£5.00")

        # ------------------------------------------------------------ the admin has the invoice
        admin = await page_for(browser, server, made["admin"]["token"], problems, "admin")
        await admin.goto("/admin")
        await admin.get_by_role("link", name="Billing").click()
        await admin.wait_for_url("**/admin/billing")
        waiting = admin.locator(f"#withdrawals [data-withdrawal-id='{withdrawal_id}']")
        await expect(waiting).to_contain_text("Dr Mo Reyes")
        await expect(waiting.locator(".badge")).to_have_text("Waiting for the invoice")
        await waiting.get_by_role("button", name=re.compile(r"^Invoice received")).click()
        await expect(waiting.locator(".badge")).to_have_text("Scheduled")
        own = await rest(http, server, "GET", "/api/billing/withdrawals", made["therapist"]["token"])
        payout_date = next(w["payout_date"] for w in own["withdrawals"] if w["id"] == withdrawal_id)
        assert payout_date and date.fromisoformat(payout_date).weekday() == 4, payout_date
        await expect(admin.locator("#withdrawals-notice")).to_contain_text(long_day(payout_date))
        await expect(waiting).to_contain_text(long_day(payout_date))
        # paying before the payout date is refused, with the date
        await waiting.get_by_role("button", name=re.compile(r"^Pay by Stripe transfer")).click()
        await expect(admin.locator("#withdrawals-notice")).to_contain_text("not due yet")
        await expect(admin.locator("#withdrawals-notice")).to_contain_text(long_day(payout_date))

        # the therapist's page followed (billing.withdrawal), without a reload
        row = therapist.locator(f"[data-withdrawal-id='{withdrawal_id}']")
        await expect(row.locator(".badge")).to_have_text("Invoice received")
        await expect(row).to_contain_text(long_day(payout_date))
        await shot(therapist, "09-therapist-earnings", readme="therapist-earnings")
        await therapist.set_viewport_size(PHONE)
        await fits_the_screen(therapist)
        await admin.set_viewport_size(PHONE)
        await fits_the_screen(admin)

        # ------------------------------------------------------------ Stripe Connect onboarding, and back
        await therapist.get_by_role("button", name="Set up payouts with Stripe").click()
        await therapist.get_by_role("button", name="Complete onboarding").click()  # the stand-in's hosted page
        await therapist.wait_for_url(re.compile(r"/earnings"))
        await expect(therapist.locator("#connect-return")).to_contain_text("Welcome back from Stripe")
        await expect(therapist.locator("#connect-state")).to_contain_text("Ready")
        await expect(therapist.get_by_role("button", name=re.compile("Stripe"))).to_be_hidden()
    assert problems.errors == [], "\n".join(problems.errors)


async def test_a_paid_session_shows_the_paid_time_left_warns_and_ends_when_the_balance_runs_out(
    e2e_server: E2EServer, browser: Browser,
) -> None:
    server, problems = e2e_server, PageProblems()
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Robin", therapist="Dr Mo Reyes", rate_pence=1000)  # £10 a minute: £10 pays exactly one minute
        client_id = made["client"]["user"]["id"]

        # ------------------------------------------------------------ the admin credits £10 (the minimum to ask)
        admin = await page_for(browser, server, made["admin"]["token"], problems, "admin")
        await admin.goto("/admin/billing")
        await admin.get_by_label("Client account number").fill(str(client_id))
        await admin.locator("#credit-form").get_by_label("Amount in pounds").fill("10")
        await admin.get_by_role("button", name="Credit the wallet").click()
        await expect(admin.locator("#credit-status")).to_have_text(
            "£10.00 credited. The client's balance is now £10.00.")

        therapist = await page_for(browser, server, made["therapist"]["token"], problems, "therapist")
        await therapist.goto("/dashboard")
        await go_available(therapist)
        client = await page_for(browser, server, made["client"]["token"], problems, "client", PHONE)
        await client.goto("/home")
        await expect(client.locator("#home-balance")).to_have_text("£10.00")
        await client.get_by_label("What would you like to talk about?").fill("Work stress")
        await client.get_by_role("button", name="Talk to someone now").click()
        await therapist.get_by_role("button", name="Accept the request from Robin").click()
        await expect(client.locator("#offer-rate")).to_have_text("£10.00 per minute")
        await client.get_by_label(re.compile("I accept the terms")).check()
        await client.get_by_role("button", name="Accept and start the session").click()
        await client.wait_for_url(re.compile(r"/call/\d+$"))
        await therapist.wait_for_url(re.compile(r"/call/\d+$"))
        call_id = int(client.url.rsplit("/", 1)[1])
        await wait_connected(therapist)
        await wait_connected(client)

        # ------------------------------------------------------------ both report connected: the first minute is paid
        for page in (client, therapist):
            await page.wait_for_function("() => window.__therapyCall.mediaReported === true")
        await expect(client.locator("#billing-state")).to_have_text("Balance: £0.00 · about 1 min of paid time left")
        await expect(client.locator("#billing-banner")).to_contain_text(
            "About 1 minute of paid time left — top up to continue.")
        await expect(client.locator("#billing-banner").get_by_role("link", name="Top up (opens in a new tab)")) \
            .to_have_attribute("href", "/wallet")
        await expect(therapist.locator("#billing-banner")).to_contain_text(
            "The client has about 1 minute of paid time left")
        await shot(client, "10-client-call-low-balance")

        # ------------------------------------------------------------ the paid minute runs out: the session ends
        await expect(client.locator("#ended-text")).to_contain_text("The session ended because your balance ran out",
                                                                    timeout=SESSION_END_TIMEOUT_MS)
        await expect(therapist.locator("#ended-text")).to_contain_text("because the client's balance ran out")
        await expect(client.get_by_role("link", name="Top up your wallet")).to_be_visible()
        assert await therapist.locator("#ended-wallet").is_hidden()

        # ------------------------------------------------------------ the admin refunds £4 of the £10 charge
        await admin.get_by_label("Session number").fill(str(call_id))
        await admin.get_by_role("button", name="Look up").click()
        await expect(detail(admin, "Charged to the client")).to_have_text("£10.00")
        await expect(detail(admin, "Minutes charged")).to_have_text("1")
        await expect(detail(admin, "Ended because the balance ran out")).to_have_text("yes")
        await admin.get_by_label("Amount to refund, in pounds").fill("4")
        await admin.get_by_role("button", name="Refund to the client's wallet").click()
        await expect(admin.locator("#refund-status")).to_have_text("£4.00 refunded to the client's wallet.")
        await expect(detail(admin, "Left to refund")).to_have_text("£6.00")
        await shot(admin, "11-admin-billing")

        await client.get_by_role("link", name="Top up your wallet").click()
        await client.wait_for_url("**/wallet")
        await expect(client.locator("#balance")).to_have_text("£4.00")
        history = client.locator("#history tr")
        await expect(history).to_have_count(3)
        await expect(history.nth(0)).to_contain_text("Refund for a session")
        await expect(history.nth(0)).to_contain_text("+£4.00")
        await expect(history.nth(1)).to_contain_text("Session: 1 minute")
        await expect(history.nth(1)).to_contain_text("−£10.00")
        await expect(history.nth(2)).to_contain_text("Credit to your wallet")

        # the therapist earned 75 % of the minute, less the same share of the refund: £7.50 - £3.00
        await therapist.goto("/earnings")
        session = therapist.locator(f"#sessions [data-call-id='{call_id}']")
        await expect(session).to_contain_text("Robin")
        await expect(session.locator("td").nth(3)).to_have_text("£4.50")
        await expect(therapist.locator("#available")).to_have_text("£4.50")
    assert problems.errors == [], "\n".join(problems.errors)
