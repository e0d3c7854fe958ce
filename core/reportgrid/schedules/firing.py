"""The pure decisions of one scheduler run (docs/SCHEDULES.md, "What one run does"): the
run's minute from the EventBridge Scheduler event, a due schedule's fire (which minute to
submit, how many to drop, when it is due next, within its end), and the SubmitReport
request a fire becomes. functions/scheduler does the I/O around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf.message import DecodeError

from reportgrid.errors import InvalidArgument
from reportgrid.schedules import cron, due
from reportgrid.schedules.fires import fire_key, fire_labels
from reportgrid.schedules.items import Schedule
from reportgrid.v1 import reports_pb2 as pb

# The target input the scheduler's AWS schedule sends (cdk/constructs/scheduler.py): the
# context attribute <aws.scheduler.scheduled-time>, "the time you specified for the
# schedule to invoke its target, for example, 2022-03-22T18:59:43Z" (docs.aws.amazon.com/
# scheduler/latest/UserGuide/managing-schedule-context-attributes.html).
SCHEDULED_TIME: Final = "scheduled_time"
_MAX_TIME_CHARS: Final = 64


class BadEvent(ValueError):
    """The invocation's event does not say which minute to fire: the target is misconfigured."""


def run_time(event: Any, *, wall_clock: datetime) -> datetime:
    """The run's "now": the event's scheduled_time (ISO 8601 with a UTC offset; what the
    local scheduler process sends from its test clock too), or `wall_clock` for an event
    without one (a manual invocation). BadEvent names what is wrong with any other."""
    if not isinstance(event, dict) or SCHEDULED_TIME not in event:
        return wall_clock.astimezone(UTC)
    text = event[SCHEDULED_TIME]
    if not isinstance(text, str) or not text or len(text) > _MAX_TIME_CHARS:
        raise BadEvent(f"{SCHEDULED_TIME} must be an ISO 8601 time string, not {text!r:.80}")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadEvent(f"{SCHEDULED_TIME} {text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise BadEvent(f"{SCHEDULED_TIME} {text!r} has no UTC offset (expected e.g. ...Z)")
    return at.astimezone(UTC)


def at_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def ms_of(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def expression_of(schedule: Schedule) -> cron.Cron | cron.Rate:
    """The schedule's expression as the edge parsed it when it computed the next fire: a
    rate counts from the start, or the creation time when there is none."""
    anchor = at_ms(schedule.start_ms or schedule.created_ms)
    return cron.parse(schedule.expression, zone=schedule.time_zone, anchor=anchor)


def next_fire_ms(schedule: Schedule, after_ms: int) -> int:
    """The schedule's first fire after `after_ms` and at or after its start, in epoch ms;
    0 when it has none before its end (what the edge files a new, updated or resumed
    schedule under)."""
    after = max(after_ms, schedule.start_ms - 1)  # at or after the start: strictly after -1
    try:
        fire = ms_of(expression_of(schedule).next_fire(at_ms(after)))
    except cron.ScheduleExpressionError:
        return 0
    return 0 if schedule.end_ms and fire > schedule.end_ms else fire


@dataclass(frozen=True, slots=True)
class FirePlan:
    fire: datetime | None  # the minute to submit now, if any
    dropped: int  # missed fires not submitted (outage beyond CATCH_UP_WINDOW, or older)
    next_fire_ms: int  # the fire after `now` within the schedule's end; 0: none (ended)

    @property
    def ends(self) -> bool:
        return self.next_fire_ms == 0


def plan_fire(schedule: Schedule, now: datetime) -> FirePlan:
    """due.plan for the schedule's recorded next fire, kept within its end: no fire and
    no next fire after `end_ms`; a fire older than CATCH_UP_WINDOW is dropped even when it
    is the last one before the end."""
    first = at_ms(schedule.next_fire_ms)
    end = at_ms(schedule.end_ms) if schedule.end_ms else None
    if end is not None and first > end:
        return FirePlan(fire=None, dropped=0, next_fire_ms=0)
    limit = min(now, end) if end is not None else now
    planned = due.plan(expression_of(schedule), due=first, now=limit)
    fire, dropped = planned.fire, planned.dropped
    if fire is not None and fire < now - due.CATCH_UP_WINDOW:
        fire, dropped = None, dropped + 1
    next_ms = ms_of(planned.next_due)
    if end is not None and planned.next_due > end:
        next_ms = 0
    return FirePlan(fire=fire, dropped=dropped, next_fire_ms=next_ms)


def fire_request(schedule: Schedule, fire: datetime) -> pb.SubmitReportRequest:
    """The SubmitReportRequest of one fire: the stored template with the fire's key and
    the schedule label (reportgrid/schedules/fires.py). InvalidArgument on
    `schedule.template` when the stored bytes are not a request."""
    try:
        request = pb.SubmitReportRequest.FromString(schedule.template)
    except DecodeError:
        raise InvalidArgument.field(
            "schedule.template", "the stored template is not a SubmitReportRequest"
        ) from None
    labels = fire_labels(request.labels, schedule.schedule_id)
    request.labels.clear()
    request.labels.update(labels)
    request.idempotency_key = fire_key(schedule.schedule_id, fire)
    return request


def lag_seconds(fire: datetime, submitted: datetime) -> float:
    """How late a fire was submitted (the FireLagSeconds metric)."""
    return max(0.0, (submitted - fire).total_seconds())
