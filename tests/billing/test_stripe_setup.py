"""Which Stripe the server uses: the embedded default's marked test mode (a local Stripe-compatible server started
with it), Stripe Connect readiness kept by `account.updated`, and billing settings that cannot work refused at start."""

from __future__ import annotations

import asyncio
from typing import Callable

import aiohttp
import pytest

from billing.testmode import check_billing_settings, wants_local_server
from billing_support import billing, call_api, code_of, deliver, event, local_stripe, people  # noqa: F401
from conftest import RunningServer, Users, start_server
from core.clock import FrozenClock
from core.errors import ConfigError
from core.settings import Settings


async def test_with_no_keys_the_embedded_default_runs_a_marked_test_mode(
        make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    settings = make_settings(env="development")
    assert wants_local_server(settings)
    running = await start_server(settings, clock=clock)
    try:
        client = await Users(running, http, client_balance_pence=0).client()
        status, body = await call_api(http, running, "GET", "/api/billing/wallet", client)
        config = body["config"]
        assert config["test_mode"] is True and config["payments_available"] is True
        assert config["publishable_key"].startswith("pk_test_") and "/js.stripe.com/v3/" in config["stripe_js_url"]
        for _ in range(100):  # the local Stripe stand-in is starting alongside
            status, body = await call_api(http, running, "POST", "/api/billing/topups", client, {"amount_pence": 1000})
            if status == 201:
                break
            assert code_of(body) == "payment_provider_error"
            await asyncio.sleep(0.1)
        assert status == 201 and body["client_secret"].startswith("pi_") and body["test_mode"] is True
    finally:
        await running.runner.cleanup()


def test_keys_or_production_turn_the_local_server_off(make_settings: Callable[..., Settings]) -> None:
    assert not wants_local_server(make_settings())  # env=test: only when asked
    assert not wants_local_server(make_settings(env="development", stripe_secret_key="sk_test_real"))
    assert wants_local_server(make_settings(stripe_local_server=True))


async def test_account_updated_for_an_account_that_is_not_ours_is_refused(
        billing: RunningServer, http: aiohttp.ClientSession) -> None:
    status, body = await deliver(http, billing, event("account.updated", {"id": "acct_stranger", "object": "account",
                                                                          "payouts_enabled": True}))
    assert (status, code_of(body)) == (400, "unknown_account")


async def test_a_pending_therapist_cannot_onboard_but_sees_the_status(billing: RunningServer, people: Users,
                                                                      http: aiohttp.ClientSession) -> None:
    pending = await people.therapist(approved=False)
    status, body = await call_api(http, billing, "POST", "/api/billing/connect/onboarding", pending)
    assert status == 403 and code_of(body) == "not_approved"
    status, body = await call_api(http, billing, "GET", "/api/billing/connect", pending)
    assert status == 200 and body["connect"] == {"account": None, "ready": False}


@pytest.mark.parametrize("overrides", [
    {"billing_commission_bp": 10_001}, {"billing_commission_bp": -1},
    {"billing_topup_min_pence": 0}, {"billing_topup_min_pence": 600, "billing_topup_max_pence": 500},
    {"billing_topup_max_pence": 300_000}, {"billing_withdrawal_min_pence": 0},
    {"billing_tick_interval_s": 0}, {"billing_payout_timezone": "Mars/Olympus"},
])
def test_unworkable_billing_settings_are_refused_at_start(make_settings: Callable[..., Settings],
                                                          overrides: dict) -> None:
    with pytest.raises(ConfigError):
        check_billing_settings(make_settings(**overrides))
