"""The whole life of a quick-connect request, through real Socket.IO connections to the embedded server."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text

from accounts.models import ClientProfile, TherapistProfile
from calls.models import Call, Consent
from conftest import RunningServer, Users, wait_for
from core.clock import FrozenClock
from messaging.outbox import messages_for
from pool.models import OfferOutcome, PoolOffer
from pool.sweeper import sweep

from support import available_therapist, from_now, round_trip, terms


async def test_request_offer_decline_reoffer_accept_opens_a_call(server: RunningServer, users: Users, sockets) -> None:
    client_user = await users.client(display_name="Casey")
    t1_user, t2_user = await users.therapist(display_name="Dr One"), await users.therapist(display_name="Dr Two")
    t1, t2 = await sockets(server, t1_user, "t1"), await sockets(server, t2_user, "t2")
    for sock in (t1, t2):
        assert (await sock.call("pool.set_availability", {"available": True}))["ok"]
    client = await sockets(server, client_user, "client")

    ack = await client.call("pool.request", {"reason": "Panic attacks at night", "notes": "Please be gentle"})
    assert ack["ok"], ack
    request = ack["request"]
    assert request["status"] == "open" and request["therapists_online"] == 2
    for sock in (t1, t2):
        card = (await sock.next("pool.request_added"))["request"]
        assert card["id"] == request["id"]
        assert card["reason"] == "Panic attacks at night" and card["notes"] == "Please be gentle"
        assert card["client"]["display_name"] == "Casey" and card["minor"] is False

    won = await t1.call("pool.accept", {"request_id": request["id"]})
    assert won["ok"] and won["offer"]["request"]["id"] == request["id"]
    lost = await t2.call("pool.accept", {"request_id": request["id"]})
    assert lost["error"]["code"] == "taken"
    for sock in (t1, t2):
        await sock.next("pool.request_removed", lambda d: d["request_id"] == request["id"])
    offer = (await client.next("pool.request_updated", lambda d: d["request"]["status"] == "offered"))["request"]["offer"]
    assert offer["therapist"]["display_name"] == "Dr One" and offer["therapist"]["bio"]

    declined = await client.call("pool.respond", {"request_id": request["id"], "accept": False})
    assert declined["ok"] and declined["request"]["status"] == "open"
    assert (await t1.next("pool.offer_updated"))["outcome"] == "declined"
    await t2.next("pool.request_added", lambda d: len([1 for e, _ in t2.events if e == "pool.request_added"]) == 2)
    assert len(t1.received("pool.request_added")) == 1, "the declined therapist is not shown it again"
    again = await t1.call("pool.accept", {"request_id": request["id"]})
    assert again["error"]["code"] == "declined"

    assert (await t2.call("pool.accept", {"request_id": request["id"]}))["ok"]
    await client.next("pool.request_updated", lambda d: d["request"]["status"] == "offered"
                      and d["request"]["offer"]["therapist"]["display_name"] == "Dr Two")
    accepted = await client.call("pool.respond", {"request_id": request["id"], "accept": True, **terms(server)})
    assert accepted["ok"], accepted
    call = accepted["call"]
    assert call["therapist_id"] == t2_user.id and call["client_id"] == client_user.id and call["recording_consent"] is True
    assert (await t2.next("call.ready"))["call"]["id"] == call["id"]
    assert (await client.next("call.ready"))["call"]["id"] == call["id"]
    assert (await t2.next("pool.offer_updated", lambda d: d["outcome"] == "accepted"))["call"]["id"] == call["id"]

    busy = await t2.call("pool.snapshot")
    assert busy["busy"] == "call"


async def test_accept_needs_the_current_terms(server: RunningServer, users: Users, sockets) -> None:
    therapist = await sockets(server, await users.therapist())
    await therapist.call("pool.set_availability", {"available": True})
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "Low mood"}))["request"]
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["ok"]
    base = {"request_id": request["id"], "accept": True, "recording_consent": False}
    assert (await client.call("pool.respond", {**base, "terms_version": "2026-01"}))["error"]["code"] == "terms_required"
    assert (await client.call("pool.respond", {**base, "accept_terms": True, "terms_version": "1999"}))["error"]["code"] == "terms_outdated"
    ok = await client.call("pool.respond", {**base, "accept_terms": True, "terms_version": server.services.settings.terms_version})
    assert ok["ok"] and ok["call"]["recording_consent"] is False


async def test_request_expires_and_client_sees_crisis_resources(server: RunningServer, users: Users, sockets, clock: FrozenClock) -> None:
    client = await sockets(server, await users.client())
    ack = await client.call("pool.request", {"reason": "Can't cope"})
    assert ack["request"]["therapists_online"] == 0
    assert ack["request"]["crisis_resources"], "nobody is online: show where else to get help"
    clock.advance(server.services.settings.request_ttl_s + 1)
    assert (await sweep(server.services.pool))["expired"] == 1
    update = (await client.next("pool.request_updated", lambda d: d["request"]["status"] == "expired"))["request"]
    assert any("999" in line for line in update["crisis_resources"])
    again = await client.call("pool.request", {"reason": "Still struggling"})
    assert again["ok"], "the client may retry"


async def test_client_withdraws_and_dashboards_drop_it(server: RunningServer, users: Users, sockets) -> None:
    therapist = await sockets(server, await users.therapist())
    await therapist.call("pool.set_availability", {"available": True})
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "Anxious"}))["request"]
    assert (await client.call("pool.cancel", {"request_id": request["id"]}))["request"]["status"] == "cancelled"
    removed = await therapist.next("pool.request_removed")
    assert removed == {"request_id": request["id"], "reason": "cancelled"}
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["error"]["code"] == "not_found"


async def test_unanswered_offer_returns_to_the_pool(server: RunningServer, users: Users, sockets, clock: FrozenClock) -> None:
    therapist = await sockets(server, await users.therapist())
    await therapist.call("pool.set_availability", {"available": True})
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "Grief"}))["request"]
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["ok"]
    clock.advance(server.services.settings.offer_ttl_s + 1)
    assert (await sweep(server.services.pool))["timed_out"] == 1
    assert (await therapist.next("pool.offer_updated"))["outcome"] == "timed_out"
    await client.next("pool.request_updated", lambda d: d["request"]["status"] == "open")
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["ok"], "it can be taken again"


async def test_therapist_who_disconnects_loses_the_offer(server: RunningServer, users: Users, sockets) -> None:
    t_user = await users.therapist()
    therapist = await sockets(server, t_user)
    await therapist.call("pool.set_availability", {"available": True})
    other = await sockets(server, await users.therapist())
    await other.call("pool.set_availability", {"available": True})
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "Stress"}))["request"]
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["ok"]
    await therapist.close()
    await client.next("pool.request_updated", lambda d: d["request"]["status"] == "open")
    await other.next("pool.request_added", lambda d: len(other.received("pool.request_added")) == 2)
    assert (await other.call("pool.accept", {"request_id": request["id"]}))["ok"]


async def test_reconnect_snapshots(server: RunningServer, users: Users, sockets) -> None:
    t_user, c_user = await users.therapist(), await users.client()
    therapist = await sockets(server, t_user)
    await therapist.call("pool.set_availability", {"available": True})
    client = await sockets(server, c_user)
    request = (await client.call("pool.request", {"reason": "Insomnia"}))["request"]
    other_client = await sockets(server, await users.client())
    second = (await other_client.call("pool.request", {"reason": "Worry"}))["request"]
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["ok"]

    tab = await sockets(server, t_user)
    snap = await tab.next("pool.snapshot")
    assert [o["request"]["id"] for o in snap["offers"]] == [request["id"]]
    assert snap["busy"] == "offer" and snap["available"] is True
    assert snap["requests"] == [], "while holding an offer, no waiting request is shown"
    free = await sockets(server, await users.therapist())
    await free.call("pool.set_availability", {"available": True})
    assert [r["id"] for r in (await free.call("pool.snapshot"))["requests"]] == [second["id"]]

    client_tab = await sockets(server, c_user)
    pushed = await client_tab.next("pool.request_updated")
    assert pushed["request"]["status"] == "offered" and pushed["request"]["offer"]["therapist"]["id"] == t_user.id
    assert (await client_tab.call("pool.state"))["request"]["id"] == request["id"]


async def test_one_open_request_per_client_and_flood_limit(server: RunningServer, users: Users, sockets) -> None:
    client = await sockets(server, await users.client())
    first = await client.call("pool.request", {"reason": "Help"})
    assert (await client.call("pool.request", {"reason": "Help again"}))["error"]["code"] == "already_open"
    await client.call("pool.cancel", {"request_id": first["request"]["id"]})
    codes = []
    for n in range(server.services.settings.requests_per_client + 2):
        ack = await client.call("pool.request", {"reason": f"try {n}"})
        codes.append(ack["ok"] or ack["error"]["code"])
        if ack["ok"]:
            await client.call("pool.cancel", {"request_id": ack["request"]["id"]})
    assert "rate_limited" in codes


async def test_minor_needs_guardian_consent_and_is_marked(server: RunningServer, users: Users, sockets) -> None:
    today = server.services.clock.now().date()
    teen_user = await users.client(date_of_birth=today.replace(year=today.year - 16).isoformat())
    teen = await sockets(server, teen_user)
    refused = await teen.call("pool.request", {"reason": "School"})
    assert refused["error"]["code"] == "guardian_consent_required"
    async with server.services.db.transaction() as session:
        profile = await session.get(ClientProfile, teen_user.id)
        profile.guardian_consent_at, profile.guardian_consent_method = server.services.clock.now(), "admin"
    therapist = await sockets(server, await users.therapist())
    await therapist.call("pool.set_availability", {"available": True})
    assert (await teen.call("pool.request", {"reason": "School"}))["ok"]
    card = (await therapist.next("pool.request_added"))["request"]
    assert card["minor"] is True and card["client"]["minor"] is True


async def test_expertise_preferences_reach_matching_therapists_only(server: RunningServer, users: Users, sockets) -> None:
    grief = await sockets(server, await users.therapist(expertise=["Grief"]))
    anxiety = await sockets(server, await users.therapist(expertise=["Anxiety"]))
    for sock in (grief, anxiety):
        await sock.call("pool.set_availability", {"available": True})
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "Loss", "expertise": ["grief"]}))["request"]
    await grief.next("pool.request_added")
    assert (await anxiety.call("pool.accept", {"request_id": request["id"]}))["error"]["code"] == "not_found"
    await round_trip(anxiety)  # anything sent to this dashboard with the request has arrived by now
    assert anxiety.received("pool.request_added") == []


async def test_sms_alert_has_no_client_details_and_is_throttled(server: RunningServer, users: Users, sockets, canary) -> None:
    for phone in ("+447700900123", "+447700900456"):
        await sockets(server, await users.therapist(phone=phone))
    async with server.services.db.transaction() as session:
        for profile in (await session.scalars(select(TherapistProfile))).all():
            profile.available = True
    client = await sockets(server, await users.client(display_name=canary.text("name-")))
    first = (await client.call("pool.request", {"reason": canary.text("reason-"), "notes": canary.text()}))["request"]

    async def texts(phone: str) -> list:
        async with server.services.db.session() as session:
            return await messages_for(session, server.services.keyring, phone, "someone_waiting")

    await wait_for(lambda: texts("+447700900456"))
    [sms] = await texts("+447700900456")
    assert "waiting" in sms.body and canary.marker not in sms.body
    await client.call("pool.cancel", {"request_id": first["id"]})
    await client.call("pool.request", {"reason": "again"})
    await asyncio.sleep(0.3)
    assert len(await texts("+447700900456")) == 1, "one text per therapist per throttle window"


async def test_request_text_is_encrypted_at_rest_and_never_logged(server: RunningServer, users: Users, sockets, canary) -> None:
    client = await sockets(server, await users.client())
    await client.call("pool.request", {"reason": canary.text("r-"), "notes": canary.text("n-")})
    async with server.services.db.session() as session:
        row = (await session.execute(text("SELECT reason_enc, notes_enc FROM pool_requests"))).one()
    assert canary.marker not in row.reason_enc and canary.marker not in row.notes_enc


async def test_a_request_right_after_going_available_reaches_that_dashboard_on_redis(
    make_settings, clock: FrozenClock, http, redis_prefix: str, sockets
) -> None:
    """With Redis the event bus is asynchronous; the availability ack must still mean "you are in the pool"."""
    from conftest import REDIS_URL, start_server

    running = await start_server(make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix), clock=clock)
    bus = running.services.bus
    deliver = bus.dispatch

    async def slow_dispatch(event_type: str, payload: dict) -> None:
        await asyncio.sleep(0.5)  # a busy Redis or a far-away process: the bus lags behind the ack
        await deliver(event_type, payload)

    bus.dispatch = slow_dispatch
    try:
        users = Users(running, http)
        therapist = await sockets(running, await users.therapist())
        client = await sockets(running, await users.client())
        for _ in range(5):
            assert (await therapist.call("pool.set_availability", {"available": True}))["ok"]
            request = (await client.call("pool.request", {"reason": "now"}))["request"]
            await therapist.next("pool.request_added", lambda d, rid=request["id"]: d["request"]["id"] == rid, timeout=0.4)
            await client.call("pool.cancel", {"request_id": request["id"]})
            assert (await therapist.call("pool.set_availability", {"available": False}))["ok"]
        for sock in (therapist, client):
            await sock.close()
    finally:
        await running.runner.cleanup()


async def test_crisis_resources_reach_a_client_who_reconnects_while_nobody_is_online(
    server: RunningServer, users: Users, sockets
) -> None:
    c_user = await users.client()
    client = await sockets(server, c_user)
    request = (await client.call("pool.request", {"reason": "Can't cope"}))["request"]
    assert request["crisis_resources"]
    tab = await sockets(server, c_user, "reloaded page")
    pushed = (await tab.next("pool.request_updated"))["request"]
    assert pushed["id"] == request["id"] and pushed["status"] == "open"
    assert pushed["therapists_online"] == 0 and any("999" in line for line in pushed["crisis_resources"])
    state = (await tab.call("pool.state"))["request"]
    assert state["therapists_online"] == 0 and state["crisis_resources"] == pushed["crisis_resources"]


async def test_crisis_resources_when_a_request_returns_to_the_pool_and_nobody_can_take_it(
    server: RunningServer, users: Users, sockets
) -> None:
    _, first = await available_therapist(server, users, sockets, "first")
    _, second = await available_therapist(server, users, sockets, "second")
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "Panic"}))["request"]
    assert request["therapists_online"] == 2 and "crisis_resources" not in request
    assert (await first.call("pool.accept", {"request_id": request["id"]}))["ok"]
    assert (await second.call("pool.set_availability", {"available": False}))["ok"]  # the only other one leaves

    updated = from_now(client, "pool.request_updated")
    declined = (await client.call("pool.respond", {"request_id": request["id"], "accept": False}))["request"]
    assert declined["status"] == "open" and declined["therapists_online"] == 0, "the declined therapist does not count"
    assert declined["crisis_resources"]
    pushed = (await updated(lambda d: d["request"]["status"] == "open"))["request"]
    assert pushed["crisis_resources"] == declined["crisis_resources"]

    assert (await second.call("pool.set_availability", {"available": True}))["ok"]
    assert "crisis_resources" not in (await client.call("pool.state"))["request"], "someone can come again"


async def test_crisis_resources_when_the_only_therapist_drops_their_offer(
    server: RunningServer, users: Users, sockets
) -> None:
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, await users.client())
    request = (await client.call("pool.request", {"reason": "Alone"}))["request"]
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["ok"]
    await client.next("pool.request_updated", lambda d: d["request"]["status"] == "offered")
    updated = from_now(client, "pool.request_updated")
    await therapist.close()
    back = (await updated(lambda d: d["request"]["status"] == "open"))["request"]
    assert back["therapists_online"] == 0 and back["crisis_resources"]


async def test_a_new_request_shows_in_the_clients_other_tabs(server: RunningServer, users: Users, sockets) -> None:
    c_user = await users.client()
    asking, other_tab = await sockets(server, c_user, "asking"), await sockets(server, c_user, "other tab")
    await round_trip(other_tab)
    assert other_tab.received("pool.request_updated") == [], "nothing to show before the request"
    request = (await asking.call("pool.request", {"reason": "Now"}))["request"]
    shown = (await other_tab.next("pool.request_updated"))["request"]
    assert shown == request


async def test_accepting_an_offer_stores_the_consent(server: RunningServer, users: Users, sockets, clock: FrozenClock) -> None:
    c_user = await users.client()
    _, therapist = await available_therapist(server, users, sockets)
    client = await sockets(server, c_user)
    request = (await client.call("pool.request", {"reason": "Talk"}))["request"]
    assert (await therapist.call("pool.accept", {"request_id": request["id"]}))["ok"]
    clock.advance(30)
    accepted = await client.call("pool.respond", {"request_id": request["id"], "accept": True,
                                                  **terms(server, recording_consent=False)})
    call_id = accepted["call"]["id"]
    version = server.services.settings.terms_version
    async with server.services.db.session() as session:
        consent = (await session.scalars(select(Consent).where(Consent.call_id == call_id))).one()
        call = await session.get(Call, call_id)
        offer = (await session.scalars(select(PoolOffer).where(PoolOffer.request_id == request["id"]))).one()
    assert consent.client_id == c_user.id and consent.terms_version == version
    assert consent.terms_accepted_at == clock.now() and consent.at == clock.now()
    assert consent.recording_consent is False
    assert call is not None and call.recording_consent is False and call.terms_version == version
    assert offer.outcome is OfferOutcome.accepted and offer.terms_version == version and offer.decided_at == clock.now()
