"""The identity of a fire: one key per (schedule, minute), a label naming the schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reportgrid.ids import validate_idempotency_key
from reportgrid.schedules.fires import (
    SCHEDULE_LABEL,
    fire_key,
    fire_labels,
    is_schedule_id,
    new_schedule_id,
)
from reportgrid.validation import label_violations


def test_the_same_minute_is_the_same_key_wherever_it_is_computed() -> None:
    sid = new_schedule_id()
    at = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    same = at.astimezone(timezone(timedelta(hours=-5)))
    assert fire_key(sid, at) == fire_key(sid, same) == f"sched:{sid}:20260105T0800Z"
    assert fire_key(sid, at) != fire_key(sid, at + timedelta(minutes=1))
    assert fire_key(sid, at) != fire_key(new_schedule_id(), at)
    validate_idempotency_key(fire_key(sid, at))


def test_schedule_ids_are_valid_label_values() -> None:
    sid = new_schedule_id()
    assert is_schedule_id(sid)
    assert not is_schedule_id(sid.upper())
    labels = fire_labels({"team": "ops"}, sid)
    assert labels == {"team": "ops", SCHEDULE_LABEL: sid}
    assert label_violations(labels) == []


def test_fire_key_refuses_a_foreign_id() -> None:
    with pytest.raises(ValueError, match="not a schedule id"):
        fire_key("rpt-123", datetime(2026, 1, 5, tzinfo=UTC))
