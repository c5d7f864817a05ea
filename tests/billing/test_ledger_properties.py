"""Property test (Hypothesis, on SQLite): random interleavings of top-ups, call charges, settlements, withdrawals,
payouts, reversals and replays, some of them concurrent, keep every transaction balanced, no wallet or earnings
account below zero, and every balance equal to a simple model's."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from accounts.models import Role, User
from billing import ledger
from billing.ledger import CARD_CLEARING, PAYOUTS, PLATFORM, available, pending, wallet, withdrawing
from billing.metering import split
from billing.models import LedgerEntry, LedgerTransaction
from core import migrate
from core.db import Database
from core.errors import Conflict

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
CLIENTS, THERAPISTS = 2, 2


class World:
    """The event loop and database the machines share (one database for the whole test: each machine gets new users)."""

    loop: asyncio.AbstractEventLoop
    db: Database
    serial = 0


def run(coro: Any) -> Any:
    return World.loop.run_until_complete(coro)


async def _post(key: str, kind: str, legs: list[tuple[ledger.Account, int]]) -> bool:
    try:
        await ledger.run_once(World.db, lambda s: ledger.post(s, key=key, kind=kind, legs=legs, now=NOW))
        return True
    except Conflict:
        return False


async def _reverse(txn_key: str, key: str) -> bool:
    async def work(session: Any) -> None:
        original = await ledger.find(session, txn_key)
        await ledger.reverse(session, original, key=key, now=NOW)

    try:
        await ledger.run_once(World.db, work)
        return True
    except Conflict:
        return False


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def make_people(self) -> None:
        async def add() -> list[int]:
            async with World.db.transaction() as session:
                World.serial += 1
                users = [User(email=f"p{World.serial}-{i}@example.org", password_hash="x",
                              role=Role.client if i < CLIENTS else Role.therapist, display_name="P",
                              created_at=NOW, updated_at=NOW) for i in range(CLIENTS + THERAPISTS)]
                session.add_all(users)
                await session.flush()
                return [u.id for u in users]

        ids = run(add())
        self.clients, self.therapists = ids[:CLIENTS], ids[CLIENTS:]
        self.model: Counter[ledger.Account] = Counter()
        self.shared = {a: run(self._balance(a)) for a in (CARD_CLEARING, PLATFORM, PAYOUTS)}
        self.posted: list[tuple[str, str, list[tuple[ledger.Account, int]]]] = []
        self.reversed: set[str] = set()
        self.n = 0

    async def _balance(self, account: ledger.Account) -> int:
        async with World.db.session() as session:
            return await ledger.balance(session, account)

    def key(self) -> str:
        self.n += 1
        return f"m{World.serial}:{self.n}"

    def allowed(self, legs: list[tuple[ledger.Account, int]]) -> bool:
        return all(self.model[a] + amount >= 0 for a, amount in legs if a.kind in ledger.NON_NEGATIVE)

    def apply(self, key: str, kind: str, legs: list[tuple[ledger.Account, int]], ok: bool) -> None:
        """Check the outcome against the model (when it can be known) and record it."""
        assert ok == self.allowed(legs), (key, legs, ok)
        if ok:
            for account, amount in legs:
                self.model[account] += amount
            self.posted.append((key, kind, legs))

    def movement(self, kind: str, legs: list[tuple[ledger.Account, int]]) -> None:
        key = self.key()
        self.apply(key, kind, legs, run(_post(key, kind, legs)))

    @rule(c=st.integers(0, CLIENTS - 1), amount=st.integers(1, 5_000))
    def top_up(self, c: int, amount: int) -> None:
        self.movement("topup", [(CARD_CLEARING, -amount), (wallet(self.clients[c]), amount)])

    @staticmethod
    def charge_legs(client: int, therapist: int, rate: int, bp: int) -> list[tuple[ledger.Account, int]]:
        share, commission = split(rate, bp)
        legs = [(wallet(client), -rate)]
        legs += [(pending(therapist), share)] if share else []
        legs += [(PLATFORM, commission)] if commission else []
        return legs

    @rule(c=st.integers(0, CLIENTS - 1), t=st.integers(0, THERAPISTS - 1), rate=st.integers(1, 900),
          bp=st.sampled_from([0, 1, 2500, 3333, 9999, 10_000]))
    def charge_a_minute(self, c: int, t: int, rate: int, bp: int) -> None:
        self.movement("call_charge", self.charge_legs(self.clients[c], self.therapists[t], rate, bp))

    @rule(t=st.integers(0, THERAPISTS - 1))
    def settle(self, t: int) -> None:
        therapist = self.therapists[t]
        amount = self.model[pending(therapist)]
        if amount:
            self.movement("settlement", [(pending(therapist), -amount), (available(therapist), amount)])

    @rule(t=st.integers(0, THERAPISTS - 1), amount=st.integers(1, 3_000))
    def withdraw(self, t: int, amount: int) -> None:
        therapist = self.therapists[t]
        self.movement("withdrawal", [(available(therapist), -amount), (withdrawing(therapist), amount)])

    @rule(t=st.integers(0, THERAPISTS - 1))
    def pay_out(self, t: int) -> None:
        therapist = self.therapists[t]
        amount = self.model[withdrawing(therapist)]
        if amount:
            self.movement("payout", [(withdrawing(therapist), -amount), (PAYOUTS, amount)])

    @rule(data=st.data())
    def reverse_one(self, data: st.DataObject) -> None:
        candidates = [(k, legs) for k, _, legs in self.posted if k not in self.reversed and not k.endswith(":rev")]
        if not candidates:
            return
        txn_key, legs = data.draw(st.sampled_from(candidates))
        negated = [(a, -amount) for a, amount in legs]
        ok = run(_reverse(txn_key, txn_key + ":rev"))
        self.apply(txn_key + ":rev", "reversal", negated, ok)
        if ok:
            self.reversed.add(txn_key)

    @rule(data=st.data())
    def replay_one(self, data: st.DataObject) -> None:
        """A retried movement (same key) moves nothing; the invariant compares every balance with the model."""
        if self.posted:
            key, kind, legs = data.draw(st.sampled_from(self.posted))
            if not key.endswith(":rev"):
                assert run(_post(key, kind, legs)) is True

    @rule(ops=st.lists(st.tuples(st.integers(0, CLIENTS - 1), st.integers(0, THERAPISTS - 1), st.integers(1, 2_000),
                                 st.booleans()), min_size=2, max_size=6))
    def concurrently(self, ops: list[tuple[int, int, int, bool]]) -> None:
        """Charges and withdrawals at once: whichever succeed, the accounts stay whole (order is the database's)."""
        batch = []
        for c, t, amount, is_charge in ops:
            legs = (self.charge_legs(self.clients[c], self.therapists[t], amount, 2500) if is_charge else
                    [(available(self.therapists[t]), -amount), (withdrawing(self.therapists[t]), amount)])
            batch.append((self.key(), "call_charge" if is_charge else "withdrawal", legs))

        async def all_at_once() -> list[bool]:
            return list(await asyncio.gather(*(_post(k, kind, legs) for k, kind, legs in batch)))

        for (key, kind, legs), ok in zip(batch, run(all_at_once())):
            if ok:
                for account, amount in legs:
                    self.model[account] += amount
                self.posted.append((key, kind, legs))

    @invariant()
    def whole_and_never_negative(self) -> None:
        if not hasattr(self, "model"):
            return

        async def check() -> None:
            async with World.db.session() as session:
                unbalanced = (await session.execute(
                    select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
                    .having(func.sum(LedgerEntry.amount_pence) != 0))).all()
                assert unbalanced == []
                mine = [wallet(c) for c in self.clients] + [f(t) for t in self.therapists
                                                           for f in (pending, available, withdrawing)]
                found = await ledger.balances(session, mine + [CARD_CLEARING, PLATFORM, PAYOUTS])
            for account in mine:
                assert found[account] >= 0, account
                assert found[account] == self.model[account], account
            for account, start in self.shared.items():
                assert found[account] == start + self.model[account], account

        run(check())


def test_random_interleavings_keep_the_ledger_whole(tmp_path: Path) -> None:
    World.loop = asyncio.new_event_loop()
    World.db = Database(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    try:
        run(migrate.upgrade(World.db))
        run_state_machine_as_test(LedgerMachine, settings=settings(
            max_examples=15, stateful_step_count=30, deadline=None, derandomize=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))

        async def totals() -> tuple[int, int]:
            async with World.db.session() as session:
                total = await session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_pence), 0)))
                txns = await session.scalar(select(func.count(LedgerTransaction.id)))
                return int(total), int(txns)

        total, txns = run(totals())
        assert total == 0 and txns > 0
    finally:
        run(World.db.dispose())
        World.loop.close()
