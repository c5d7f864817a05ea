"""The ledger: balanced transactions in integer pence, balances as sums of entries, idempotency keys, reversals only,
and accounts of people's money that never go below zero, also under concurrent movements (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import AsyncIterator

import pytest
from sqlalchemy import func, select

from accounts.models import Role, User
from billing import ledger
from billing.ledger import CARD_CLEARING, PLATFORM, available, pending, wallet, withdrawing
from billing.models import LedgerEntry, LedgerTransaction
from core import migrate
from core.db import Database
from core.errors import Conflict

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


async def add_users(db: Database, *roles: Role) -> list[int]:
    async with db.transaction() as session:
        users = [User(email=f"u{i}-{id(session)}@example.org", password_hash="x", role=role, display_name="U",
                      created_at=NOW, updated_at=NOW) for i, role in enumerate(roles)]
        session.add_all(users)
        await session.flush()
        return [u.id for u in users]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()


async def post(db: Database, key: str, legs: list[tuple[ledger.Account, int]], kind: str = "test") -> ledger.Posted:
    return await ledger.run_once(db, lambda s: ledger.post(s, key=key, kind=kind, legs=legs, now=NOW))


async def bal(db: Database, account: ledger.Account) -> int:
    async with db.session() as session:
        return await ledger.balance(session, account)


async def test_money_moves_between_named_accounts_and_balances_are_sums_of_entries(db: Database) -> None:
    client, therapist = await add_users(db, Role.client, Role.therapist)
    await post(db, "topup", [(CARD_CLEARING, -2000), (wallet(client), 2000)])
    await post(db, "minute1", [(wallet(client), -100), (pending(therapist), 75), (PLATFORM, 25)])
    await post(db, "settle", [(pending(therapist), -75), (available(therapist), 75)])
    assert (await bal(db, wallet(client)), await bal(db, pending(therapist)), await bal(db, available(therapist))) == (1900, 0, 75)
    assert (await bal(db, PLATFORM), await bal(db, CARD_CLEARING)) == (25, -2000)
    async with db.session() as session:
        assert await session.scalar(select(func.sum(LedgerEntry.amount_pence))) == 0
        assert await session.scalar(select(func.count(LedgerTransaction.id))) == 3


async def test_the_same_key_moves_money_once(db: Database) -> None:
    (client,) = await add_users(db, Role.client)
    first = await post(db, "topup:pi_1", [(CARD_CLEARING, -500), (wallet(client), 500)])
    again = await post(db, "topup:pi_1", [(CARD_CLEARING, -500), (wallet(client), 500)])
    assert first.created and not again.created and again.txn.id == first.txn.id
    assert await bal(db, wallet(client)) == 500
    with pytest.raises(Conflict) as err:
        await post(db, "topup:pi_1", [(CARD_CLEARING, -900), (wallet(client), 900)])
    assert err.value.code == "idempotency_mismatch"
    assert await bal(db, wallet(client)) == 500


async def test_a_wallet_never_goes_below_zero(db: Database) -> None:
    client, therapist = await add_users(db, Role.client, Role.therapist)
    await post(db, "topup", [(CARD_CLEARING, -150), (wallet(client), 150)])
    await post(db, "m1", [(wallet(client), -100), (PLATFORM, 100)])
    with pytest.raises(Conflict) as err:
        await post(db, "m2", [(wallet(client), -100), (PLATFORM, 100)])
    assert err.value.code == "insufficient_balance"
    with pytest.raises(Conflict) as err:
        await post(db, "w", [(available(therapist), -1), (withdrawing(therapist), 1)])
    assert err.value.code == "insufficient_earnings"
    assert await bal(db, wallet(client)) == 50
    async with db.session() as session:
        assert await ledger.find(session, "m2") is None


@pytest.mark.parametrize("legs", [
    [(CARD_CLEARING, -100)],                                   # one leg
    [(CARD_CLEARING, -100), (PLATFORM, 99)],                   # unbalanced
    [(CARD_CLEARING, 0), (PLATFORM, 0)],                       # zero
    [(CARD_CLEARING, -1.5), (PLATFORM, 1.5)],                  # fractional
    [(CARD_CLEARING, -True), (PLATFORM, True)],                # booleans are not pence
    [(CARD_CLEARING, -10**12), (PLATFORM, 10**12)],            # huge
    [(PLATFORM, -100), (PLATFORM, 100)],                       # the same account twice
])
def test_malformed_movements_are_refused(legs: list[tuple[ledger.Account, object]]) -> None:
    with pytest.raises(ValueError):
        ledger.check_legs(legs)  # type: ignore[arg-type]


def test_accounts_know_whose_they_are() -> None:
    assert wallet(7).code == "client_wallet:7" and PLATFORM.code == "platform_revenue"
    with pytest.raises(ValueError):
        ledger.Account(ledger.AccountKind.client_wallet)
    with pytest.raises(ValueError):
        ledger.Account(ledger.AccountKind.platform_revenue, 3)


async def test_entries_are_reversed_never_edited_and_only_once(db: Database) -> None:
    (client,) = await add_users(db, Role.client)
    topup = await post(db, "topup", [(CARD_CLEARING, -300), (wallet(client), 300)])

    async def undo(key: str) -> ledger.Posted:
        async def work(session):  # type: ignore[no-untyped-def]
            original = await session.get(LedgerTransaction, topup.txn.id)
            return await ledger.reverse(session, original, key=key, now=NOW)
        return await ledger.run_once(db, work)

    reversal = await undo("undo-1")
    assert reversal.created and reversal.txn.reverses_id == topup.txn.id
    assert not (await undo("undo-1")).created
    with pytest.raises(Conflict) as err:
        await undo("undo-2")
    assert err.value.code == "already_reversed"
    assert await bal(db, wallet(client)) == 0
    async with db.session() as session:
        entries = (await session.scalars(select(LedgerEntry.amount_pence).order_by(LedgerEntry.id))).all()
    assert entries == [-300, 300, 300, -300]  # card clearing, wallet; then the same legs negated


async def test_a_reversal_that_would_overdraw_the_wallet_is_refused(db: Database) -> None:
    (client,) = await add_users(db, Role.client)
    topup = await post(db, "topup", [(CARD_CLEARING, -300), (wallet(client), 300)])
    await post(db, "spend", [(wallet(client), -200), (PLATFORM, 200)])

    async def undo(session):  # type: ignore[no-untyped-def]
        return await ledger.reverse(session, await session.get(LedgerTransaction, topup.txn.id), key="undo", now=NOW)

    with pytest.raises(Conflict) as err:
        await ledger.run_once(db, undo)
    assert err.value.code == "insufficient_balance" and await bal(db, wallet(client)) == 100


async def test_concurrent_debits_never_overdraw_a_wallet(db: Database) -> None:
    (client,) = await add_users(db, Role.client)
    await post(db, "topup", [(CARD_CLEARING, -1000), (wallet(client), 1000)])

    async def spend(i: int) -> str:
        try:
            await post(db, f"spend-{i}", [(wallet(client), -100), (PLATFORM, 100)])
            return "ok"
        except Conflict as err:
            return err.code

    results = await asyncio.gather(*(spend(i) for i in range(25)))
    assert results.count("ok") == 10 and set(results) == {"ok", "insufficient_balance"}
    assert await bal(db, wallet(client)) == 0 and await bal(db, PLATFORM) == 1000


async def test_concurrent_posts_of_one_key_move_money_once(db: Database) -> None:
    (client,) = await add_users(db, Role.client)
    posted = await asyncio.gather(*(post(db, "topup:pi_same", [(CARD_CLEARING, -700), (wallet(client), 700)])
                                    for _ in range(20)))
    assert sum(p.created for p in posted) == 1 and len({p.txn.id for p in posted}) == 1
    assert await bal(db, wallet(client)) == 700
