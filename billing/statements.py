"""A user's transactions, as a list and as CSV: every ledger entry on that user's own accounts (a client's wallet
and frozen money; a therapist's pending, available and withdrawing earnings), newest first. Nobody sees another's."""

from __future__ import annotations

import csv
import io
from typing import Any, Mapping

from sqlalchemy import select

from billing.context import BillingContext
from billing.models import LedgerAccount, LedgerEntry, LedgerTransaction
from core.validation import integer, only_fields

DESCRIPTIONS = {
    "topup": "Top-up by card",
    "grant": "Credit",
    "call_charge": "Call",
    "settlement": "Call earnings available",
    "call_refund": "Refund of a call",
    "withdrawal": "Withdrawal requested",
    "withdrawal_cancelled": "Withdrawal cancelled",
    "payout": "Withdrawal paid",
    "card_refund": "Refund to card",
    "card_refund_failed": "Refund to card failed",
    "dispute_freeze": "Card dispute: amount frozen",
    "dispute_release": "Card dispute won: amount released",
    "dispute_lost": "Card dispute lost",
    "reversal": "Reversal",
}
CSV_COLUMNS = ("date", "transaction", "type", "description", "account", "amount_pence", "amount_gbp", "call_id",
               "reference")


def _row(txn: LedgerTransaction, account: LedgerAccount, entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": txn.id, "entry_id": entry.id, "at": txn.created_at.isoformat(), "kind": txn.kind,
        "description": DESCRIPTIONS.get(txn.kind, txn.kind), "account": account.kind.value,
        "amount_pence": entry.amount_pence, "call_id": txn.call_id, "reference": txn.reference,
    }


async def entries(ctx: BillingContext, user_id: int, *, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    """The user's entries, newest first; `before` (an entry id) pages back."""
    query = (
        select(LedgerTransaction, LedgerAccount, LedgerEntry)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.user_id == user_id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    async with ctx.db.session() as session:
        return [_row(t, a, e) for t, a, e in (await session.execute(query)).all()]


def page_query(query: Mapping[str, str]) -> tuple[int, int | None]:
    only_fields(query, {"limit", "before"})
    parsed: dict[str, Any] = {}
    for name in ("limit", "before"):
        raw = query.get(name)
        if raw is not None:
            parsed[name] = int(raw) if raw.isdigit() else raw
    limit = integer(parsed, "limit", minimum=1, maximum=500, required=False, default=100)
    before = integer(parsed, "before", minimum=1, maximum=2**62, required=False, default=0) or None
    return limit, before


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not _number(text)) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def gbp(pence: int) -> str:
    sign = "-" if pence < 0 else ""
    return f"{sign}{abs(pence) // 100}.{abs(pence) % 100:02d}"


async def csv_export(ctx: BillingContext, user_id: int) -> str:
    """All the user's entries as CSV (UTF-8, a header row, oldest first)."""
    rows: list[dict[str, Any]] = []
    before = None
    while True:
        page = await entries(ctx, user_id, limit=500, before=before)
        rows.extend(page)
        if len(page) < 500:
            break
        before = page[-1]["entry_id"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in reversed(rows):
        writer.writerow([_cell(v) for v in (r["at"], r["id"], r["kind"], r["description"], r["account"],
                                            r["amount_pence"], gbp(r["amount_pence"]), r["call_id"], r["reference"])])
    return out.getvalue()
