"""Transactions as a list and as CSV, each user's own only: a client never reads another's wallet, top-ups or
transactions. Admin credits through the ledger."""

from __future__ import annotations

import csv
import io

import aiohttp

from billing_support import (audits, balance_of, billing, call_api, code_of, credit, earn, join_both,  # noqa: F401
                             local_stripe, people, quick_connect_call, tick)
from billing.ledger import wallet
from conftest import RunningServer, Users
from core.clock import FrozenClock


async def test_each_side_downloads_its_own_transactions_as_csv(
        billing: RunningServer, people: Users, clock: FrozenClock, http: aiohttp.ClientSession, sockets) -> None:
    therapist, client = await people.therapist(), await people.client()
    await credit(billing, client, 1000)
    call_id = await quick_connect_call(billing, therapist, client)
    t_sock, c_sock = await join_both(sockets, billing, therapist, client, call_id)
    clock.advance(60)
    await tick(billing)
    assert (await c_sock.call("call.hangup", {"call_id": call_id}))["ok"]

    async with http.get(f"{billing.url}/api/billing/transactions.csv", headers=client.headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [(r["type"], r["amount_pence"], r["amount_gbp"]) for r in rows] == [
        ("grant", "1000", "10.00"), ("call_charge", "-100", "-1.00"), ("call_charge", "-100", "-1.00")]
    assert {r["account"] for r in rows} == {"client_wallet"} and rows[1]["call_id"] == str(call_id)

    async with http.get(f"{billing.url}/api/billing/transactions.csv", headers=therapist.headers) as resp:
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [(r["type"], r["account"], r["amount_pence"]) for r in rows] == [
        ("call_charge", "therapist_pending", "75"), ("call_charge", "therapist_pending", "75"),
        ("settlement", "therapist_available", "150"), ("settlement", "therapist_pending", "-150")]

    status, body = await call_api(http, billing, "GET", "/api/billing/transactions?limit=2", client)
    assert status == 200 and [t["amount_pence"] for t in body["transactions"]] == [-100, -100]
    older = await call_api(http, billing, "GET", f"/api/billing/transactions?before={body['next_before']}", client)
    assert [t["kind"] for t in older[1]["transactions"]] == ["grant"]
    for query in ("limit=0", "limit=abc", "before=-1", "limit=501", "user_id=1"):
        bad = await call_api(http, billing, "GET", f"/api/billing/transactions?{query}", client)
        assert bad[0] == 400, query


async def test_a_client_never_sees_another_clients_money(billing: RunningServer, people: Users,
                                                         http: aiohttp.ClientSession) -> None:
    alice, bob = await people.client(), await people.client()
    await credit(billing, alice, 4200)
    status, body = await call_api(http, billing, "POST", "/api/billing/topups", alice, {"amount_pence": 1000})
    alices_topup = body["topup"]["id"]
    for path in (f"/api/billing/topups/{alices_topup}",):
        got = await call_api(http, billing, "GET", path, bob)
        assert got[0] == 404 and code_of(got[1]) == "not_found"
    bob_wallet = (await call_api(http, billing, "GET", "/api/billing/wallet", bob))[1]
    assert bob_wallet["wallet"]["balance_pence"] == 0 and bob_wallet["topups"] == []
    assert (await call_api(http, billing, "GET", "/api/billing/transactions", bob))[1]["transactions"] == []
    async with http.get(f"{billing.url}/api/billing/transactions.csv", headers=bob.headers) as resp:
        assert (await resp.text()).strip().count("\n") == 0  # the header row only
    assert (await call_api(http, billing, "GET", f"/api/billing/wallet?user_id={alice.id}", bob))[1]["wallet"][
        "balance_pence"] == 0, "no parameter names another wallet"
    therapist = await people.therapist()
    assert (await call_api(http, billing, "GET", "/api/billing/wallet", therapist))[0] == 403
    assert (await call_api(http, billing, "GET", "/api/billing/earnings", alice))[0] == 403


async def test_csv_cells_cannot_run_as_spreadsheet_formulas() -> None:
    from billing.statements import _cell, gbp

    assert _cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")" and _cell("@SUM(1)") == "'@SUM(1)"
    assert _cell("-100") == "-100" and _cell("-cmd") == "'-cmd" and _cell(None) == ""
    assert (gbp(-1), gbp(5), gbp(123456)) == ("-0.01", "0.05", "1234.56")


async def test_an_admin_credits_a_client_once_per_key(billing: RunningServer, people: Users,
                                                      http: aiohttp.ClientSession, sockets) -> None:
    admin, client, therapist = await people.admin(), await people.client(), await people.therapist()
    screen = await sockets(billing, client, "client")
    key = {"Idempotency-Key": "goodwill-42"}
    for _ in range(2):
        status, body = await call_api(http, billing, "POST", f"/api/admin/billing/clients/{client.id}/credits", admin,
                                      {"amount_pence": 500, "memo": "sorry about the dropped call"}, key)
        assert status == 201 and body["balance_pence"] == 500
    assert (await screen.next("billing.balance")) == {"balance_pence": 500}
    assert await balance_of(billing, wallet(client.id)) == 500
    assert len(await audits(billing, "billing.wallet_credited", client.id)) == 1
    no_key = await call_api(http, billing, "POST", f"/api/admin/billing/clients/{client.id}/credits", admin,
                            {"amount_pence": 500})
    assert no_key[0] == 400
    not_client = await call_api(http, billing, "POST", f"/api/admin/billing/clients/{therapist.id}/credits", admin,
                                {"amount_pence": 500}, {"Idempotency-Key": "x"})
    assert not_client[0] == 404
