"""The pure decisions of a scheduler run (reportgrid/schedules/firing.py): the run's minute
from Scheduler's event, a fire's plan within the schedule's end, a fire's request."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from reportgrid.errors import InvalidArgument
from reportgrid.schedules.fires import SCHEDULE_LABEL, fire_key, new_schedule_id
from reportgrid.schedules.firing import BadEvent, fire_request, ms_of, plan_fire, run_time
from reportgrid.schedules.items import Schedule
from reportgrid.v1 import reports_pb2 as pb

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
WALL = datetime(2030, 1, 1, tzinfo=UTC)


def _schedule(**changes: object) -> Schedule:
    template = pb.SubmitReportRequest(kind="synthetic", labels={"team": "ops"})
    base = Schedule(
        schedule_id=new_schedule_id(),
        tenant="tenant-a",
        expression="rate(5 minutes)",
        time_zone="UTC",
        template=template.SerializeToString(),
        home_region="us-east-1",
        created_ms=ms_of(T0 - timedelta(days=1)),
        updated_ms=ms_of(T0 - timedelta(days=1)),
        next_fire_ms=ms_of(T0),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_run_time_is_schedulers_scheduled_time() -> None:
    # The form of <aws.scheduler.scheduled-time> (managing-schedule-context-attributes.html)
    at = run_time({"scheduled_time": "2022-03-22T18:59:43Z"}, wall_clock=WALL)
    assert at == datetime(2022, 3, 22, 18, 59, 43, tzinfo=UTC)
    assert run_time({"scheduled_time": "2022-03-22T20:59:43+02:00"}, wall_clock=WALL) == at
    assert run_time({}, wall_clock=WALL) == WALL


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2022-03-22T18:59:43", "no UTC offset"),
        ("soon", "not an ISO 8601 time"),
        ("", "must be an ISO 8601 time string"),
        (1647975583, "must be an ISO 8601 time string"),
        ("2" * 100, "must be an ISO 8601 time string"),
    ],
)
def test_a_malformed_scheduled_time_is_named(value: object, message: str) -> None:
    with pytest.raises(BadEvent, match=message):
        run_time({"scheduled_time": value}, wall_clock=WALL)


def test_a_plan_stays_within_the_end() -> None:
    # Due at T0, ends at T0 + 7 min: the fire at T0 + 5 is the last one
    schedule = _schedule(end_ms=ms_of(T0 + timedelta(minutes=7)))
    plan = plan_fire(schedule, T0)
    assert (plan.fire, plan.dropped, plan.next_fire_ms) == (T0, 0, ms_of(T0 + timedelta(minutes=5)))
    last = plan_fire(
        dataclasses.replace(schedule, next_fire_ms=plan.next_fire_ms), T0 + timedelta(minutes=30)
    )
    # T0 + 5 fires (within the window), nothing after the end: no next fire
    assert last.fire == T0 + timedelta(minutes=5)
    assert last.dropped == 0
    assert last.ends


def test_a_last_fire_before_the_end_but_outside_the_window_is_dropped() -> None:
    schedule = _schedule(end_ms=ms_of(T0 + timedelta(minutes=7)))
    plan = plan_fire(schedule, T0 + timedelta(hours=3))
    assert plan.fire is None
    assert plan.dropped == 2  # T0 and T0 + 5
    assert plan.ends


def test_a_due_fire_after_the_end_ends_the_schedule() -> None:
    plan = plan_fire(_schedule(end_ms=ms_of(T0 - timedelta(minutes=1))), T0)
    assert (plan.fire, plan.dropped, plan.ends) == (None, 0, True)


def test_a_fire_request_is_the_template_with_the_key_and_the_label() -> None:
    schedule = _schedule()
    request = fire_request(schedule, T0)
    assert request.idempotency_key == fire_key(schedule.schedule_id, T0)
    assert dict(request.labels) == {"team": "ops", SCHEDULE_LABEL: schedule.schedule_id}
    assert request.kind == "synthetic"


def test_a_template_that_is_not_a_request_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as caught:
        fire_request(_schedule(template=b"\xff\xff\xff"), T0)
    assert caught.value.violations[0].field == "schedule.template"
