"""When a schedule the edge writes fires first (reportgrid/schedules/firing.next_fire_ms): after
now, at or after its start, never after its end; a rate counts from its start."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reportgrid.schedules.firing import next_fire_ms
from reportgrid.schedules.items import Schedule


def ms(*when: int) -> int:
    """Milliseconds of a UTC time given as year, month, day[, hour, minute, second]."""
    return int(datetime(*when, tzinfo=UTC).timestamp() * 1000)  # type: ignore[arg-type,misc]


def schedule(expression: str, **kwargs: int | str) -> Schedule:
    fields: dict[str, Any] = {
        "time_zone": "UTC",
        "created_ms": ms(2026, 12, 1, 10, 7),
        **kwargs,
    }
    return Schedule(
        schedule_id="sch-" + "0" * 20,
        tenant="acme",
        expression=expression,
        template=b"",
        home_region="us-east-1",
        updated_ms=fields["created_ms"],
        **fields,
    )


def test_a_cron_fires_at_its_next_match_after_now_in_its_zone() -> None:
    monday_8_berlin = schedule("0 8 * * MON", time_zone="Europe/Berlin")
    # Tuesday 2026-12-01 10:07 UTC: next Monday 08:00 CET is 07:00 UTC
    assert next_fire_ms(monday_8_berlin, ms(2026, 12, 1, 10, 7)) == ms(2026, 12, 7, 7, 0)


def test_a_start_in_the_future_is_the_earliest_fire_and_counts_as_itself() -> None:
    start = ms(2026, 12, 3, 9, 0)
    hourly = schedule("0 * * * *", start_ms=start)
    assert next_fire_ms(hourly, ms(2026, 12, 1, 10, 7)) == start  # at, not after, the start
    rate = schedule("rate(90 minutes)", start_ms=start)
    assert next_fire_ms(rate, ms(2026, 12, 1, 10, 7)) == start
    assert next_fire_ms(rate, start) == start + 90 * 60_000


def test_a_rate_without_start_counts_from_creation_to_the_minute() -> None:
    rate = schedule("rate(5 minutes)", created_ms=ms(2026, 12, 1, 10, 7) + 42_000)
    assert next_fire_ms(rate, ms(2026, 12, 1, 10, 20, 1)) == ms(2026, 12, 1, 10, 22)


def test_no_fire_after_the_end() -> None:
    ending = schedule("0 8 * * *", end_ms=ms(2026, 12, 2, 7, 59))
    assert next_fire_ms(ending, ms(2026, 12, 1, 10, 7)) == 0
    at_the_end = schedule("0 8 * * *", end_ms=ms(2026, 12, 2, 8, 0))
    assert next_fire_ms(at_the_end, ms(2026, 12, 1, 10, 7)) == ms(2026, 12, 2, 8, 0)
