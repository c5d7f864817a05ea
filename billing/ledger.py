"""The double-entry ledger: every movement of money is one transaction of balanced entries between named accounts.

- Amounts are integer pence. An entry adds `amount_pence` to its account's balance (negative takes away); the entries
  of a transaction sum to zero, so money is only ever moved, never made or lost.
- A balance is the sum of the account's entries. Entries are never updated or deleted: a mistake is undone by
  `reverse`, a new transaction with every leg negated (a transaction is reversed at most once).
- Every transaction has an idempotency key (unique in the database): posting the same key again returns the first
  transaction and moves nothing.
- Accounts that hold real people's money (wallets, earnings, withdrawals, frozen disputes) never go below zero. The
  check runs inside the transaction that writes: the debited accounts' rows are locked first (`SELECT ... FOR UPDATE`
  on PostgreSQL, in id order so two movements never deadlock; SQLite's `Database.transaction()` holds the database's
  write lock from its start), then their balances are summed and the movement refused if one would go negative.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable, Iterable, NamedTuple, Sequence, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from core.db import Database
from core.errors import Conflict
from core.logging import get_logger

log = get_logger("billing")
T = TypeVar("T")

#: The largest amount one leg may move: £100 million, far above any real movement, far below 64-bit overflow.
MAX_PENCE = 10_000_000_000
PER_USER = frozenset({
    AccountKind.client_wallet, AccountKind.client_frozen, AccountKind.therapist_pending,
    AccountKind.therapist_available, AccountKind.therapist_withdrawing,
})
#: Accounts that may never go below zero, and the error code for a movement that would take one there.
NON_NEGATIVE: dict[AccountKind, tuple[str, str]] = {
    AccountKind.client_wallet: ("insufficient_balance", "the wallet does not hold enough for this"),
    AccountKind.client_frozen: ("insufficient_frozen", "not that much is frozen"),
    AccountKind.therapist_pending: ("insufficient_earnings", "not that much is pending"),
    AccountKind.therapist_available: ("insufficient_earnings", "not that much is available to withdraw"),
    AccountKind.therapist_withdrawing: ("insufficient_earnings", "not that much is being withdrawn"),
}


@dataclass(frozen=True)
class Account:
    """A named account: a kind, and the user it belongs to for per-user kinds."""

    kind: AccountKind
    user_id: int | None = None

    def __post_init__(self) -> None:
        if (self.kind in PER_USER) != (self.user_id is not None):
            raise ValueError(f"{self.kind.value} {'needs' if self.kind in PER_USER else 'takes no'} user id")

    @property
    def code(self) -> str:
        return self.kind.value if self.user_id is None else f"{self.kind.value}:{self.user_id}"


def wallet(user_id: int) -> Account:
    return Account(AccountKind.client_wallet, user_id)


def frozen(user_id: int) -> Account:
    return Account(AccountKind.client_frozen, user_id)


def pending(user_id: int) -> Account:
    return Account(AccountKind.therapist_pending, user_id)


def available(user_id: int) -> Account:
    return Account(AccountKind.therapist_available, user_id)


def withdrawing(user_id: int) -> Account:
    return Account(AccountKind.therapist_withdrawing, user_id)


PLATFORM = Account(AccountKind.platform_revenue)
CARD_CLEARING = Account(AccountKind.card_clearing)
PAYOUTS = Account(AccountKind.payouts)


class Posted(NamedTuple):
    txn: LedgerTransaction
    #: False when the idempotency key had been posted before (nothing moved this time).
    created: bool


def check_legs(legs: Sequence[tuple[Account, int]]) -> None:
    """A transaction's legs: at least two, distinct accounts, whole non-zero pence within bounds, summing to zero."""
    if len(legs) < 2:
        raise ValueError("a transaction needs at least two legs")
    if len({account.code for account, _ in legs}) != len(legs):
        raise ValueError("each account appears once in a transaction")
    for _, amount in legs:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_PENCE:
            raise ValueError(f"leg amounts are non-zero whole pence up to {MAX_PENCE}: {amount!r}")
    if sum(amount for _, amount in legs) != 0:
        raise ValueError("the legs of a transaction must sum to zero")


async def account_id(session: AsyncSession, account: Account, now: datetime) -> int:
    """The account's row id, creating the row on first use (safely when two transactions race to create it)."""
    found = await session.scalar(select(LedgerAccount.id).where(LedgerAccount.code == account.code))
    if found is not None:
        return found
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(LedgerAccount)
        .values(code=account.code, kind=account.kind, user_id=account.user_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["code"])
    )
    created = await session.scalar(select(LedgerAccount.id).where(LedgerAccount.code == account.code))
    assert created is not None
    return created


async def balance(session: AsyncSession, account: Account) -> int:
    """The account's balance: the sum of its entries (0 for an account never used)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_pence), 0))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.code == account.code)
    )
    return int(total or 0)


async def balances(session: AsyncSession, accounts: Iterable[Account]) -> dict[Account, int]:
    accounts = list(accounts)
    rows = (await session.execute(
        select(LedgerAccount.code, func.coalesce(func.sum(LedgerEntry.amount_pence), 0))
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerAccount.code.in_([a.code for a in accounts]))
        .group_by(LedgerAccount.code)
    )).all()
    by_code = {code: int(total) for code, total in rows}
    return {a: by_code.get(a.code, 0) for a in accounts}


async def _balance_of(session: AsyncSession, account_row_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_pence), 0)).where(LedgerEntry.account_id == account_row_id)
    )
    return int(total or 0)


async def find(session: AsyncSession, key: str) -> LedgerTransaction | None:
    return await session.scalar(select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key))


async def post(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    legs: Sequence[tuple[Account, int]],
    now: datetime,
    call_id: int | None = None,
    reference: str | None = None,
    actor_id: int | None = None,
    memo: str = "",
    reverses_id: int | None = None,
) -> Posted:
    """Post one balanced transaction in the session's (open) database transaction, once per `key`.

    Raises `Conflict` (`insufficient_balance`, `insufficient_earnings`, ...) when a non-negative account would go below
    zero, and `Conflict` `idempotency_mismatch` when `key` was used before for a different movement."""
    check_legs(legs)
    if not key or len(key) > 128:
        raise ValueError("an idempotency key of 1 to 128 characters is required")
    resolved = [(account, await account_id(session, account, now), amount)
                for account, amount in sorted(legs, key=lambda leg: leg[0].code)]
    existing = await find(session, key)
    if existing is not None:
        if existing.kind != kind or {e.account_id: e.amount_pence for e in existing.entries} != {
                row_id: amount for _, row_id, amount in resolved}:
            raise Conflict("this idempotency key was used for a different movement", code="idempotency_mismatch")
        return Posted(existing, False)
    debited = sorted((row_id, account, amount) for account, row_id, amount in resolved
                     if amount < 0 and account.kind in NON_NEGATIVE)
    if debited:
        await session.execute(
            select(LedgerAccount.id).where(LedgerAccount.id.in_([row_id for row_id, _, _ in debited]))
            .order_by(LedgerAccount.id).with_for_update()
        )
        for row_id, account, amount in debited:
            if await _balance_of(session, row_id) + amount < 0:
                code, message = NON_NEGATIVE[account.kind]
                raise Conflict(message, code=code)
    txn = LedgerTransaction(idempotency_key=key, kind=kind, created_at=now, call_id=call_id, reference=reference,
                            reverses_id=reverses_id, actor_id=actor_id, memo=memo[:200])
    txn.entries = [LedgerEntry(account_id=row_id, amount_pence=amount) for _, row_id, amount in resolved]
    session.add(txn)
    await session.flush()
    log.info("billing.posted", txn_id=txn.id, kind=kind, call_id=call_id,
             pence=sum(amount for _, _, amount in resolved if amount > 0))
    return Posted(txn, True)


async def legs_of(session: AsyncSession, txn: LedgerTransaction) -> list[tuple[Account, int]]:
    rows = {a.id: a for a in (await session.scalars(
        select(LedgerAccount).where(LedgerAccount.id.in_([e.account_id for e in txn.entries])))).all()}
    return [(Account(rows[e.account_id].kind, rows[e.account_id].user_id), e.amount_pence) for e in txn.entries]


async def reverse(
    session: AsyncSession,
    original: LedgerTransaction,
    *,
    key: str,
    now: datetime,
    kind: str = "reversal",
    actor_id: int | None = None,
    memo: str = "",
) -> Posted:
    """Undo `original` with a transaction of negated legs (at most once; a non-negative account must still allow it)."""
    already = await session.scalar(select(LedgerTransaction).where(LedgerTransaction.reverses_id == original.id))
    if already is not None:
        if already.idempotency_key == key:
            return Posted(already, False)
        raise Conflict("this movement has already been reversed", code="already_reversed")
    if original.reverses_id is not None:
        raise Conflict("a reversal is not itself reversed; post a new movement", code="invalid")
    legs = [(account, -amount) for account, amount in await legs_of(session, original)]
    return await post(session, key=key, kind=kind, legs=legs, now=now, call_id=original.call_id,
                      reference=original.reference, actor_id=actor_id, memo=memo, reverses_id=original.id)


def _retryable(exc: DBAPIError) -> bool:
    """A deadlock or serialisation failure (PostgreSQL) or a busy database (SQLite): safe to run again."""
    orig = exc.orig
    state = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return state in ("40P01", "40001") or "database is locked" in str(orig)


async def run_once(db: Database, work: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 5) -> T:
    """Run `work` in one database transaction; run it again from the start when it lost a race.

    Losing a race is a unique violation (another transaction posted the same idempotency key, or recorded the same
    Stripe event, first) or a deadlock. `work` reads the state afresh each time, so the second run finds what the
    winner wrote and does nothing twice."""
    for attempt in range(attempts):
        try:
            async with db.transaction() as session:
                return await work(session)
        except IntegrityError:
            if attempt == attempts - 1:
                raise
        except DBAPIError as exc:
            if attempt == attempts - 1 or not _retryable(exc):
                raise
        await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
    raise AssertionError("unreachable")
