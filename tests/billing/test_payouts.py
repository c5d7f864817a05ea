"""The payout date: the Friday of the week after the (UK, Monday-to-Sunday) week in which the invoice was received.
Checked against a table written by hand from a calendar, across weeks, months, years, both clock changes and
29 February 2028."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from billing.payouts import is_due, payout_date


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


TABLE = [
    # invoice received (UTC)          payout Friday    why
    ("2026-01-05 09:00",              "2026-01-16",    "Monday: the Friday of the next week"),
    ("2026-01-09 17:00",              "2026-01-16",    "Friday: a week later"),
    ("2026-01-11 23:59:59",           "2026-01-16",    "Sunday night (GMT): still the same week"),
    ("2026-01-12 00:00",              "2026-01-23",    "Monday midnight starts a new week"),
    ("2026-03-28 23:30",              "2026-04-03",    "Saturday night, the eve of the spring clock change"),
    ("2026-03-29 22:59",              "2026-04-03",    "Sunday 23:59 BST, the day the clocks went forward"),
    ("2026-03-29 23:00",              "2026-04-10",    "00:00 BST Monday, though still Sunday in UTC"),
    ("2026-07-05 23:30",              "2026-07-17",    "summer: Sunday 23:30 UTC is Monday 00:30 in the UK"),
    ("2026-10-18 23:30",              "2026-10-30",    "the last Monday (00:30 BST) before the autumn change"),
    ("2026-10-25 00:30",              "2026-10-30",    "Sunday 01:30 BST, just before the clocks go back"),
    ("2026-10-25 23:30",              "2026-10-30",    "Sunday 23:30 GMT, after they went back"),
    ("2026-10-26 00:00",              "2026-11-06",    "Monday 00:00 GMT"),
    ("2025-12-29 10:00",              "2026-01-09",    "a week spanning the new year, paid in the new year"),
    ("2026-12-25 12:00",              "2027-01-01",    "Christmas Day: paid on New Year's Day (no holiday rule)"),
    ("2026-12-31 16:00",              "2027-01-08",    "New Year's Eve, a Thursday"),
    ("2027-01-03 23:00",              "2027-01-08",    "Sunday 3 January is still the old year's week"),
    ("2027-01-04 00:00",              "2027-01-15",    "Monday 4 January"),
    ("2028-02-21 08:00",              "2028-03-03",    "Monday before the leap day: paid across it"),
    ("2028-02-26 12:00",              "2028-03-03",    "Saturday before the leap day"),
    ("2028-02-29 12:00",              "2028-03-10",    "29 February 2028, a Tuesday"),
    ("2028-03-01 12:00",              "2028-03-10",    "the day after"),
    ("2028-03-26 23:30",              "2028-04-07",    "2028's spring clock change: Monday 00:30 BST"),
]


@pytest.mark.parametrize(("received", "expected", "why"), TABLE, ids=[row[0] for row in TABLE])
def test_payout_dates_match_the_hand_written_table(received: str, expected: str, why: str) -> None:
    assert payout_date(utc(received)) == date.fromisoformat(expected), why
    assert date.fromisoformat(expected).weekday() == 4


def test_a_payout_is_due_from_the_start_of_its_uk_friday() -> None:
    assert not is_due(date(2026, 1, 16), utc("2026-01-15 23:59:59"))
    assert is_due(date(2026, 1, 16), utc("2026-01-16 00:00"))
    assert not is_due(date(2026, 4, 3), utc("2026-04-02 22:59"))      # Thursday 23:59 BST
    assert is_due(date(2026, 4, 3), utc("2026-04-02 23:00"))          # Friday 00:00 BST
    assert is_due(date(2026, 4, 3), utc("2026-04-20 12:00"))          # late is still due


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        payout_date(datetime(2026, 1, 5, 9, 0))
