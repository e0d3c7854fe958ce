"""Schedule messages as plain data (docs/SCHEDULES.md): the Schedule a client's arguments
stand for, and the field mask an update names. Shared by both clients, no I/O but reading an
input file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from google.protobuf import field_mask_pb2

from reportgrid import errors
from reportgrid.v1 import reports_pb2 as pb

OVERLAP_POLICIES: Final = {"skip": pb.OVERLAP_POLICY_SKIP, "allow": pb.OVERLAP_POLICY_ALLOW}
# What UpdateSchedule may change (its update_mask paths).
UPDATABLE: Final = (
    "expression",
    "time_zone",
    "template",
    "start_time",
    "end_time",
    "overlap_policy",
    "description",
)
_BARE_RATE: Final = re.compile(r"\d+\s+\w+")


def schedule_expression(*, cron: str | None = None, rate: str | None = None) -> str:
    """The expression of exactly one of `cron` ("0 8 * * MON") or `rate` ("5 minutes", or
    "rate(5 minutes)"); the service checks the grammar."""
    if (cron is None) == (rate is None):
        raise errors.InvalidArgument.field("schedule.expression", "give one of cron or rate")
    if cron is not None:
        return cron.strip()
    assert rate is not None
    text = rate.strip()
    return f"rate({text})" if _BARE_RATE.fullmatch(text) else text


def parse_overlap(
    overlap: pb.OverlapPolicy.ValueType | str | None,
) -> pb.OverlapPolicy.ValueType:
    """ "skip" | "allow" (or the enum) to the OverlapPolicy enum; None is SKIP."""
    if overlap is None:
        return pb.OVERLAP_POLICY_SKIP
    if not isinstance(overlap, str):
        return overlap
    try:
        return OVERLAP_POLICIES[overlap.lower()]
    except KeyError:
        raise errors.InvalidArgument.field(
            "schedule.overlap_policy", f"unknown {overlap!r}; use one of skip, allow"
        ) from None


def as_template(request: pb.SubmitReportRequest) -> pb.SubmitReportRequest:
    """A submit request as a schedule's template: without an idempotency key (each fire
    gets its own)."""
    template = pb.SubmitReportRequest()
    template.CopyFrom(request)
    template.ClearField("idempotency_key")
    return template


def build_schedule(
    template: pb.SubmitReportRequest,
    *,
    expression: str,
    time_zone: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    overlap: pb.OverlapPolicy.ValueType | str | None = None,
    description: str | None = None,
    notify_url: str | None = None,
) -> pb.Schedule:
    """The Schedule for the arguments of `create_schedule` (or an update's new values)."""
    schedule = pb.Schedule(
        expression=expression,
        time_zone=time_zone or "",
        template=as_template(template),
        overlap_policy=parse_overlap(overlap),
        description=description or "",
    )
    if notify_url is not None:
        schedule.template.notify.url = notify_url
    if start_time is not None:
        schedule.start_time.FromDatetime(start_time)
    if end_time is not None:
        schedule.end_time.FromDatetime(end_time)
    return schedule


def update_mask(paths: Sequence[str]) -> field_mask_pb2.FieldMask:
    """The mask naming `paths`, each one UpdateSchedule can change."""
    unknown = [p for p in paths if p not in UPDATABLE]
    if unknown:
        raise errors.InvalidArgument.field(
            "update_mask", f"cannot update {', '.join(unknown)}; updatable: {', '.join(UPDATABLE)}"
        )
    if not paths:
        raise errors.InvalidArgument.field("update_mask", "name at least one field to change")
    return field_mask_pb2.FieldMask(paths=sorted(set(paths)))
