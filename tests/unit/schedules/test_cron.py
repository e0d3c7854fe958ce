"""Cron and rate expressions: grammar, next fire, time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reportgrid.schedules.cron import ScheduleExpressionError, parse

T0 = datetime(2026, 1, 5, 7, 59, 30, tzinfo=UTC)  # a Monday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(expression: str, after: datetime, n: int, zone: str = "UTC") -> list[datetime]:
    expr = parse(expression, zone=zone, anchor=after)
    out: list[datetime] = []
    for _ in range(n):
        after = expr.next_fire(after)
        out.append(after)
    return out


def test_every_monday_at_eight_in_utc() -> None:
    assert fires("0 8 * * MON", T0, 2) == [utc(2026, 1, 5, 8, 0), utc(2026, 1, 12, 8, 0)]


def test_next_fire_is_strictly_after() -> None:
    at = utc(2026, 1, 5, 8, 0)
    assert parse("0 8 * * *", anchor=at).next_fire(at) == utc(2026, 1, 6, 8, 0)


def test_lists_ranges_steps_and_names() -> None:
    assert fires("*/20 9-10 * JAN-MAR 1-5", T0, 4) == [
        utc(2026, 1, 5, 9, 0),
        utc(2026, 1, 5, 9, 20),
        utc(2026, 1, 5, 9, 40),
        utc(2026, 1, 5, 10, 0),
    ]
    assert fires("5,7 8 * * *", T0, 2) == [utc(2026, 1, 5, 8, 5), utc(2026, 1, 5, 8, 7)]
    # `a/step` runs from a to the field's end (Vixie).
    assert fires("50/5 8 * * *", T0, 3)[-1] == utc(2026, 1, 6, 8, 50)


def test_weekday_seven_is_sunday() -> None:
    assert fires("0 0 * * 7", T0, 1) == fires("0 0 * * 0", T0, 1) == [utc(2026, 1, 11, 0, 0)]


def test_day_of_month_or_weekday_when_both_restricted() -> None:
    # The 10th (a Saturday) or any Wednesday, whichever is first.
    assert fires("0 0 10 * WED", T0, 2) == [utc(2026, 1, 7, 0, 0), utc(2026, 1, 10, 0, 0)]


def test_leap_day_waits_for_a_leap_year() -> None:
    assert fires("0 0 29 2 *", T0, 1) == [utc(2028, 2, 29, 0, 0)]


def test_time_zone_is_wall_clock() -> None:
    # 08:00 in New York is 13:00 UTC in winter and 12:00 UTC in summer.
    assert fires("0 8 * * *", T0, 1, "America/New_York") == [utc(2026, 1, 5, 13, 0)]
    assert fires("0 8 * * *", utc(2026, 7, 1), 1, "America/New_York") == [utc(2026, 7, 1, 12, 0)]


def test_dst_gap_skips_and_fold_fires_once() -> None:
    # 2026-03-08 02:30 does not exist in New York: that day does not fire.
    assert fires("30 2 * * *", utc(2026, 3, 7, 12), 2, "America/New_York") == [
        utc(2026, 3, 9, 6, 30),
        utc(2026, 3, 10, 6, 30),
    ]
    # 2026-11-01 01:30 happens twice: it fires once, at the first (EDT, 05:30 UTC).
    assert fires("30 1 * * *", utc(2026, 10, 31, 12), 2, "America/New_York") == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
    ]


def test_rate_counts_from_the_anchor_in_utc() -> None:
    anchor = utc(2026, 3, 8, 6, 0) + timedelta(seconds=40)  # floored to 06:00
    rate = parse("rate(90 minutes)", zone="America/New_York", anchor=anchor)
    assert rate.next_fire(anchor - timedelta(hours=1)) == utc(2026, 3, 8, 6, 0)
    assert rate.next_fire(utc(2026, 3, 8, 6, 0)) == utc(2026, 3, 8, 7, 30)
    assert rate.next_fire(utc(2026, 3, 8, 7, 31)) == utc(2026, 3, 8, 9, 0)
    assert parse("rate(1 day)", anchor=anchor).next_fire(anchor) == utc(2026, 3, 9, 6, 0)


@pytest.mark.parametrize(
    ("expression", "zone", "needle"),
    [
        ("", "UTC", "1 to 256"),
        ("0 8 * *", "UTC", "5 fields"),
        ("60 8 * * *", "UTC", "minute: 60 is outside 0-59"),
        ("0 24 * * *", "UTC", "hour: 24"),
        ("0 8 0 * *", "UTC", "day of month: 0"),
        ("0 8 * 13 *", "UTC", "month: 13"),
        ("0 8 * * 8", "UTC", "day of week: 8"),
        ("0 8 * * FUNDAY", "UTC", "'FUNDAY' is not a number"),
        ("*/0 * * * *", "UTC", "step '0'"),
        ("0 10-8 * * *", "UTC", "runs backwards"),
        ("0 0 31 2 *", "UTC", "never fires"),
        ("rate(5 weeks)", "UTC", "rate(N minutes"),
        ("rate(0 minutes)", "UTC", "1 minute to 366 days"),
        ("rate(367 days)", "UTC", "1 minute to 366 days"),
        ("0 8 * * *", "Mars/Olympus", "not an IANA time zone"),
        ("0 8 * * *", "../etc/passwd", "not an IANA time zone"),
    ],
)
def test_bad_expressions_name_the_problem(expression: str, zone: str, needle: str) -> None:
    with pytest.raises(ScheduleExpressionError) as raised:
        parse(expression, zone=zone, anchor=T0)
    assert needle in str(raised.value)
