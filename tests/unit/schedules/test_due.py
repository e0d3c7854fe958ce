"""A due schedule: fire on time, catch up once after an outage, the peer only after grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reportgrid.schedules.cron import parse
from reportgrid.schedules.due import PEER_GRACE, fires_here, plan

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
EVERY_5 = parse("rate(5 minutes)", anchor=T0)


def test_on_time_fires_once_and_moves_on() -> None:
    result = plan(EVERY_5, due=T0, now=T0 + timedelta(seconds=3))
    assert result.fire == T0
    assert result.dropped == 0
    assert result.next_due == T0 + timedelta(minutes=5)


def test_not_yet_due_fires_nothing() -> None:
    result = plan(EVERY_5, due=T0, now=T0 - timedelta(seconds=1))
    assert result.fire is None
    assert result.next_due == T0


def test_after_an_outage_only_the_newest_missed_fire_runs() -> None:
    # Down 3 hours: 37 fires due (08:00 to 11:00); the newest runs, 36 are dropped.
    now = T0 + timedelta(hours=3, seconds=10)
    result = plan(EVERY_5, due=T0, now=now)
    assert result.fire == T0 + timedelta(hours=3)
    assert result.dropped == 36
    assert result.next_due == T0 + timedelta(hours=3, minutes=5)


def test_a_fire_older_than_the_window_is_dropped_not_run() -> None:
    daily = parse("0 8 * * *", anchor=T0)
    result = plan(daily, due=T0, now=T0 + timedelta(hours=2))
    assert result.fire is None
    assert result.dropped == 1
    assert result.next_due == T0 + timedelta(days=1)


def test_home_fires_when_due_the_peer_only_after_grace() -> None:
    def here(region: str, now: datetime) -> bool:
        return fires_here(home_region="eu-west-1", region=region, due=T0, now=now)

    assert here("eu-west-1", T0)
    assert not here("us-east-1", T0 + PEER_GRACE - timedelta(seconds=1))
    assert here("us-east-1", T0 + PEER_GRACE)
