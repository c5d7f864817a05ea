"""When a withdrawal is paid out.

The rule (from the service's terms: "once we receive the invoice, we will release your earnings on the Friday the week
after"): weeks run Monday to Sunday in UK local time (Europe/London: GMT in winter, BST in summer). Take the moment
the invoice was marked received, convert it to UK local time and take its calendar date `d`; the payout date is the
Friday of the week after `d`'s week, that is `d - d.weekday() + 11 days` (back to `d`'s Monday, on to the next Monday,
on to its Friday). An invoice received at any time from Monday 00:00 to Sunday 23:59:59 UK time is paid on the same
Friday, 11 to 5 days later (7 days for one received on a Friday). The UK date decides, not the UTC date: late on a
Sunday evening in summer is already Monday in the UK, and so the week after next's Friday.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

UK = "Europe/London"


def local_date(moment: datetime, tz: str = UK) -> date:
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return moment.astimezone(ZoneInfo(tz)).date()


def payout_date(invoice_received_at: datetime, tz: str = UK) -> date:
    """The Friday of the week after the (UK) week in which the invoice was received."""
    d = local_date(invoice_received_at, tz)
    return d - timedelta(days=d.weekday()) + timedelta(days=11)


def is_due(payout_on: date, now: datetime, tz: str = UK) -> bool:
    """On or after the payout date, in UK local time."""
    return local_date(now, tz) >= payout_on
