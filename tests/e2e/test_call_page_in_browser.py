"""The call page in real Chromium: the admin's demo client link opens a test session as the demo client (its token
travels in the URL fragment only), the audio link to the server is built with the call's TURN servers and
relay-only policy, and the peer connection restarts ICE after it stays disconnected or the browser comes back online,
without leaving the call."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from e2e_support import (
    HEADLESS_ARGS, E2EServer, Launch, PageProblems, chromium_processes, make_people, running_server,
)

pytestmark = pytest.mark.slow
TURN_URL = "turn:127.0.0.1:3478"  # nothing listens there: the test looks at the configuration, not at a relay


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    yield from running_server(tmp_path_factory, {
        "THERAPY_TURN_URLS": TURN_URL, "THERAPY_TURN_SECRET": "e2e-turn-secret", "THERAPY_ICE_RELAY_ONLY": "true",
    })


@pytest.fixture
async def launch(request: pytest.FixtureRequest) -> AsyncIterator[Launch]:
    async with chromium_processes(request) as launch:
        yield launch


#: Runs in the page: a CallPeer whose connection had been negotiated, driven through connection states by hand.
ICE_RESTARTS = """async () => {
  const { CallPeer, DISCONNECTED_RESTART_MS } = await import("/static/js/lib/peer.js");
  const sent = [];
  const peer = new CallPeer({ config: { iceServers: [] }, polite: false, stream: null,
                              send: async (m) => { sent.push(m); return { ok: true }; } });
  const pc = peer.pc;
  pc.onnegotiationneeded = null;  // only the restarts make offers here
  let state = "connected";
  Object.defineProperty(pc, "connectionState", { get: () => state });
  Object.defineProperty(pc, "remoteDescription", { get: () => ({ type: "answer", sdp: "" }) });
  peer.mayOffer = true;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const restarts = () => sent.filter((m) => m.kind === "offer" && m.ice_restart).length;
  const change = (to) => { state = to; pc.onconnectionstatechange(); };
  const out = {};
  change("disconnected");   // a blip the browser recovers from by itself
  await sleep(500);
  change("connected");
  await sleep(DISCONNECTED_RESTART_MS + 500);
  out.blip = restarts();
  change("disconnected");   // stays down
  await sleep(500);
  out.early = restarts();
  await sleep(DISCONNECTED_RESTART_MS);
  out.stayedDown = restarts();
  await pc.setLocalDescription({ type: "rollback" });
  change("connected");
  window.dispatchEvent(new Event("online"));   // the network changed
  await sleep(500);
  out.online = restarts();
  peer.close();
  return out;
}"""


async def signed_in_context(browser: Any, server: E2EServer, token: str, only_on: str | None = None) -> Any:
    """A browser context whose pages (or only the page at path `only_on`) start signed in with `token`."""
    context = await browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    sign_in = f"sessionStorage.setItem('therapy.token', {token!r})"
    await context.add_init_script(f"if (location.pathname === {only_on!r}) {sign_in}" if only_on else sign_in)
    return context


async def open_test_session(launch: Launch, server: E2EServer, problems: PageProblems, therapist: str
                            ) -> tuple[Any, Any, dict[str, Any], int, str]:
    """An admin opens a test session with a new approved therapist: (browser, admin's context, the people, the call,
    the demo client's token)."""
    async with aiohttp.ClientSession() as http:
        made = await make_people(http, server, client="Kim", therapist=therapist)
    browser = await launch(HEADLESS_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
    # the admin is signed in on the admin page only: the demo client's window starts with nobody signed in
    context = await signed_in_context(browser, server, made["admin"]["token"], only_on="/admin")
    admin = await context.new_page()
    problems.watch(admin, "admin")
    await admin.goto("/admin")
    await expect(admin.locator("#test-therapist option")).not_to_have_count(0)
    await admin.get_by_label("Approved therapist").select_option(label=f"{therapist} ({made['therapist_email']})")
    await admin.get_by_label("Record and transcribe the test session").check()
    await admin.get_by_role("button", name="Open a test session").click()
    link = admin.locator("#demo-link")
    await expect(link).to_be_visible()
    href = await link.get_attribute("href")
    token = await admin.locator("#demo-token").input_value()
    call_id = int(re.fullmatch(r"/call/(\d+)#token=(.+)", href or "").group(1))  # type: ignore[union-attr]
    assert href == f"/call/{call_id}#token={token}" and "?" not in href, "the token only in the fragment"
    return browser, context, made, call_id, token


async def test_demo_client_link_relay_only_server_link_and_ice_restarts(e2e_server: E2EServer, launch: Launch) -> None:
    server, problems = e2e_server, PageProblems()
    browser, context, made, call_id, token = await open_test_session(launch, server, problems, "Dr Ann Lee")
    admin = context.pages[0]
    link = admin.locator("#demo-link")
    assert await link.get_attribute("target") == "_blank" and "noopener" in (await link.get_attribute("rel") or "")

    async with context.expect_page() as opened:
        await link.click()
    demo = await opened.value
    problems.watch(demo, "demo client")
    await demo.wait_for_function("() => window.__therapyCall && window.__therapyCall.role === 'client'")
    assert await demo.evaluate("() => [location.pathname, location.search, location.hash]") == [f"/call/{call_id}", "", ""]
    assert await demo.evaluate("() => sessionStorage.getItem('therapy.token')") == token, "the demo client's session"
    assert token not in server.log_text(), "the token never reached the server in an address"

    await demo.wait_for_function("() => window.__therapyCall.serverPc !== null")
    config = await demo.evaluate("() => window.__therapyCall.serverPc.getConfiguration()")
    assert config["iceTransportPolicy"] == "relay", "the audio link to the server goes through TURN too"
    [turn] = [s for s in config["iceServers"] if TURN_URL in s["urls"]]
    assert re.fullmatch(rf"\d+:c{call_id}u\d+", turn["username"]) and turn["credential"], "this call's credentials"

    restarts = await demo.evaluate(ICE_RESTARTS)
    assert restarts == {"blip": 0, "early": 0, "stayedDown": 1, "online": 2}, restarts
    assert await demo.evaluate("() => window.__therapyCall.ended") is False, "the call goes on"
    assert problems.errors == [], "\n".join(problems.errors)


async def test_what_comes_before_the_pages_own_join_is_answered_is_kept(e2e_server: E2EServer, launch: Launch
                                                                         ) -> None:
    """The therapist's join is answered only after the client joined and sent its offer: the server's
    `call.peer_joined` and the offer reach the therapist's page first. The page says the client is joining (not
    that it waits for them) and answers that offer, so the two connect rather than both waiting."""
    server, problems = e2e_server, PageProblems()
    browser, context, made, call_id, _ = await open_test_session(launch, server, problems, "Dr Bo Reed")
    held: list[str] = []
    routes: list[Any] = []
    join_sent, announced, offered = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def hold_the_join_answer(page_side: Any) -> None:
        routes.append(page_side)
        server_side = page_side.connect_to_server()
        join_ids: set[str] = set()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and (match := re.match(r'42(\d+)\["call\.join"', message)):
                join_ids.add(match.group(1))
                join_sent.set()
            server_side.send(message)

        def to_page(message: str | bytes) -> None:
            if isinstance(message, str) and (match := re.match(r"43(\d+)\[", message)) and match.group(1) in join_ids:
                held.append(message)  # Socket.IO's answer to the join: kept back until the client has joined
                return
            if isinstance(message, str) and '"call.peer_joined"' in message:
                announced.set()
            if isinstance(message, str) and '"call.signal"' in message and '"kind":"offer"' in message.replace(" ", ""):
                offered.set()
            page_side.send(message)

        page_side.on_message(to_server)
        server_side.on_message(to_page)

    therapist = await (await signed_in_context(browser, server, made["therapist"]["token"])).new_page()
    problems.watch(therapist, "therapist")
    await therapist.route_web_socket(re.compile(r"/socket\.io/"), hold_the_join_answer)
    await therapist.goto(f"/call/{call_id}")
    await asyncio.wait_for(join_sent.wait(), 15)

    async with context.expect_page() as opened:
        await context.pages[0].locator("#demo-link").click()
    demo = await opened.value
    problems.watch(demo, "demo client")
    await demo.wait_for_function("() => window.__therapyCall && window.__therapyCall.role === 'client'")
    await asyncio.wait_for(announced.wait(), 15)
    await asyncio.wait_for(offered.wait(), 15)
    assert await therapist.evaluate("() => window.__therapyCall.role") is None, "its join is not answered yet"
    [answer] = held
    routes[-1].send(answer)
    await expect(therapist.locator("#peer-banner")).to_contain_text("The client is joining…")
    await expect(therapist.locator("#remote-placeholder")).to_have_text("The client is joining…")
    # the offer that came early is answered (this server relays media through a TURN server that is not there, so
    # the connection itself goes no further than the exchange of descriptions)
    await therapist.wait_for_function("() => window.__therapyCall.pc?.remoteDescription?.type === 'offer'")
    await demo.wait_for_function("() => window.__therapyCall.pc?.remoteDescription?.type === 'answer'")
    assert problems.errors == [], "\n".join(problems.errors)
