"""The schedule RPCs (docs/SCHEDULES.md): CreateSchedule, GetSchedule, ListSchedules,
UpdateSchedule, PauseSchedule, ResumeSchedule, DeleteSchedule.

A schedule is validated the way a report is: the expression and zone by
reportgrid.schedules.cron, the template by the same validation SubmitReport runs (its
violations named under "schedule.template."), so a schedule that was accepted never makes
a report that SubmitReport would refuse. Writes go through grpc_edge/schedule_store.py,
conditioned on the stored version: a client that gave `expected_version` gets
FAILED_PRECONDITION when it is stale; otherwise the change is applied to a fresh read, a
few times at most.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

from grpc_edge.audit_log import AuditLog
from grpc_edge.call import Call
from grpc_edge.list_filters import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from grpc_edge.schedule_store import ScheduleStore, StaleVersion
from grpc_edge.tokens import PageTokens, filters_hash
from reportgrid import limits
from reportgrid.engine.registry import Registry
from reportgrid.errors import (
    Conflict,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from reportgrid.schedules import cron
from reportgrid.schedules.cron import ScheduleExpressionError
from reportgrid.schedules.fires import SCHEDULE_LABEL, is_schedule_id, new_schedule_id
from reportgrid.schedules.firing import next_fire_ms
from reportgrid.schedules.items import Overlap, Schedule
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy, validate_submit_on_loop

MAX_DESCRIPTION_CHARS: Final = 1024
# The fields UpdateSchedule may name in its mask (the rest are output only).
UPDATABLE: Final = (
    "expression",
    "time_zone",
    "template",
    "start_time",
    "end_time",
    "overlap_policy",
    "description",
)
# What decides when a schedule fires: a change to one of them re-plans its next fire.
_TIMING: Final = ("expression", "time_zone", "start_ms", "end_ms")
# Reads and conditional writes tried before a write without expected_version gives up.
WRITE_ATTEMPTS: Final = 4
# The precondition type of a stale expected_version.
VERSION_MISMATCH: Final = "VERSION_MISMATCH"
# The schedule list has one partition and no filters: its tokens carry one cursor.
_LIST_DIGEST: Final = filters_hash(["schedules"])
_OVERLAP_FROM_PROTO: Final = {
    pb.OVERLAP_POLICY_UNSPECIFIED: Overlap.SKIP,
    pb.OVERLAP_POLICY_SKIP: Overlap.SKIP,
    pb.OVERLAP_POLICY_ALLOW: Overlap.ALLOW,
}
_OVERLAP_TO_PROTO: Final = {
    Overlap.SKIP: pb.OVERLAP_POLICY_SKIP,
    Overlap.ALLOW: pb.OVERLAP_POLICY_ALLOW,
}
_ID_HELP: Final = "is not a schedule id (sch- and 20 lowercase hex digits)"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_proto(schedule: Schedule) -> pb.Schedule:
    s = schedule
    out = pb.Schedule(
        schedule_id=s.schedule_id,
        expression=s.expression,
        time_zone=s.time_zone,
        template=pb.SubmitReportRequest.FromString(s.template),
        overlap_policy=_OVERLAP_TO_PROTO[s.overlap],
        paused=s.paused,
        description=s.description,
        last_report_id=s.last_report_id,
        version=s.version,
        fired_count=s.fired,
        skipped_count=s.skipped,
        home_region=s.home_region,
    )
    for name, ms in (
        ("start_time", s.start_ms),
        ("end_time", s.end_ms),
        ("next_fire_time", s.next_fire_ms),
        ("last_fire_time", s.last_fire_ms),
        ("create_time", s.created_ms),
        ("update_time", s.updated_ms),
    ):
        if ms:
            getattr(out, name).FromMilliseconds(ms)
    return out


def schedule_id_of(text: str, field: str) -> str:
    if not text:
        raise InvalidArgument.field(field, "is required")
    if not is_schedule_id(text):
        raise InvalidArgument.field(field, _ID_HELP)
    return text


def _millis(spec: pb.Schedule, name: str, violations: list[FieldViolation]) -> int:
    if not spec.HasField(name):  # type: ignore[arg-type]  # a literal of the union
        return 0
    stamp = getattr(spec, name)
    if not 0 < stamp.seconds < 253402300800 or not 0 <= stamp.nanos < 1_000_000_000:
        violations.append(FieldViolation(f"schedule.{name}", "must be between 1970 and 9999"))
        return 0
    return int(stamp.ToMilliseconds())


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    """A validated schedule's user-given fields, as the item keeps them."""

    expression: str
    time_zone: str
    template: bytes
    start_ms: int
    end_ms: int
    overlap: Overlap
    description: str


class ScheduleService:
    def __init__(
        self,
        *,
        store: ScheduleStore,
        registry: Registry,
        inputs: InputPolicy,
        tokens: PageTokens,
        region: str,
        audit: AuditLog,
    ) -> None:
        self.store = store
        self.registry = registry
        self.inputs = inputs
        self.tokens = tokens
        self.region = region  # a schedule's home region: the edge's that created it
        self.audit = audit

    # -- validation -----------------------------------------------------------------------

    async def _spec(
        self,
        spec: pb.Schedule,
        call: Call,
        *,
        now_ms: int,
        created_ms: int,
        changed: frozenset[str],
    ) -> _Spec:
        """The schedule's fields, or InvalidArgument naming every bad one. Only the
        `changed` fields are held to what holds at write time only (a template against
        today's kinds, an end in the future)."""
        violations: list[FieldViolation] = []
        start_ms = _millis(spec, "start_time", violations)
        end_ms = _millis(spec, "end_time", violations)
        if end_ms and start_ms and end_ms <= start_ms:
            violations.append(FieldViolation("schedule.end_time", "must be after start_time"))
        elif end_ms and end_ms <= now_ms and "end_time" in changed:
            violations.append(FieldViolation("schedule.end_time", "is in the past"))
        zone = spec.time_zone or "UTC"
        try:
            cron.parse_zone(zone)
        except ScheduleExpressionError as err:
            violations.append(FieldViolation("schedule.time_zone", str(err)))
        else:
            if not spec.expression:
                violations.append(
                    FieldViolation(
                        "schedule.expression",
                        'is required: a 5-field cron ("0 8 * * MON") or "rate(5 minutes)"',
                    )
                )
            else:
                try:
                    cron.parse(spec.expression, zone=zone, anchor=_at(start_ms or created_ms))
                except ScheduleExpressionError as err:
                    violations.append(FieldViolation("schedule.expression", str(err)))
        if len(spec.description) > MAX_DESCRIPTION_CHARS:
            violations.append(
                FieldViolation(
                    "schedule.description", f"is longer than {MAX_DESCRIPTION_CHARS} characters"
                )
            )
        overlap = _OVERLAP_FROM_PROTO.get(spec.overlap_policy)
        if overlap is None:
            violations.append(
                FieldViolation("schedule.overlap_policy", f"{spec.overlap_policy} is not a policy")
            )
        if "template" in changed:
            violations += await self._template_violations(spec, call)
        if violations:
            raise InvalidArgument(violations)
        assert overlap is not None
        return _Spec(
            expression=spec.expression.strip(),
            time_zone=zone,
            template=spec.template.SerializeToString(deterministic=True),
            start_ms=start_ms,
            end_ms=end_ms,
            overlap=overlap,
            description=spec.description,
        )

    async def _template_violations(self, spec: pb.Schedule, call: Call) -> list[FieldViolation]:
        if not spec.HasField("template"):
            return [
                FieldViolation("schedule.template", "is required: the report each fire submits")
            ]
        template = spec.template
        found: list[FieldViolation] = []
        try:
            await validate_submit_on_loop(
                template, self.registry, tenant=call.tenant, inputs=self.inputs
            )
        except InvalidArgument as err:
            found += [
                FieldViolation(f"schedule.template.{v.field}", v.description)
                for v in err.violations
            ]
        if template.idempotency_key:
            found.append(
                FieldViolation(
                    "schedule.template.idempotency_key",
                    "must be empty: each fire gets its own key (sched:<schedule id>:<minute>)",
                )
            )
        if template.durability == pb.DURABILITY_MULTI_REGION:
            # The scheduler submits to its own region's task log only (functions/scheduler
            # records such a fire as skipped), so the promise could not be kept.
            found.append(
                FieldViolation(
                    "schedule.template.durability",
                    "DURABILITY_MULTI_REGION is not available for scheduled reports; a missed "
                    "fire is taken over by the peer region's scheduler instead",
                )
            )
        if SCHEDULE_LABEL in template.labels:
            found.append(
                FieldViolation(
                    f"schedule.template.labels[{SCHEDULE_LABEL}]",
                    "is set by the service on every fire's report; leave it out",
                )
            )
        elif len(template.labels) >= limits.MAX_LABELS:
            found.append(
                FieldViolation(
                    "schedule.template.labels",
                    f"has {len(template.labels)} labels; at most {limits.MAX_LABELS - 1}, "
                    f"since each fire adds {SCHEDULE_LABEL}",
                )
            )
        return found

    # -- RPCs -----------------------------------------------------------------------------

    async def create(self, request: pb.CreateScheduleRequest, call: Call) -> pb.Schedule:
        if not request.HasField("schedule"):
            raise InvalidArgument.field("schedule", "is required")
        now = _now_ms()
        spec = await self._spec(
            request.schedule, call, now_ms=now, created_ms=now, changed=frozenset(UPDATABLE)
        )
        schedule = Schedule(
            schedule_id=new_schedule_id(),
            tenant=call.tenant,
            home_region=self.region,
            created_ms=now,
            updated_ms=now,
            **dataclasses.asdict(spec),
        )
        schedule = dataclasses.replace(schedule, next_fire_ms=next_fire_ms(schedule, now))
        await self.store.create(schedule, deadline=call.deadline)
        await self.audit.record(call, "schedule.create", schedule_id=schedule.schedule_id)
        return to_proto(schedule)

    async def get(self, request: pb.GetScheduleRequest, call: Call) -> pb.Schedule:
        sid = schedule_id_of(request.schedule_id, "schedule_id")
        schedule = await self.store.get(call.tenant, sid, deadline=call.deadline)
        if schedule is None:
            raise NotFound("schedule", sid)
        return to_proto(schedule)

    async def list(self, request: pb.ListSchedulesRequest, call: Call) -> pb.ListSchedulesResponse:
        if request.page_size < 0:
            raise InvalidArgument.field(
                "page_size", f"must not be negative (0 means {DEFAULT_PAGE_SIZE})"
            )
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before = None
        if request.page_token:
            before = self.tokens.read(call.tenant, request.page_token, _LIST_DIGEST, 1).shards[0]
        schedules, last = await self.store.page(
            call.tenant, before=before, limit=size, deadline=call.deadline
        )
        response = pb.ListSchedulesResponse(schedules=[to_proto(s) for s in schedules])
        if last is not None:
            response.next_page_token = self.tokens.issue(call.tenant, [last], _LIST_DIGEST)
        return response

    async def update(self, request: pb.UpdateScheduleRequest, call: Call) -> pb.Schedule:
        sid = schedule_id_of(request.schedule.schedule_id, "schedule.schedule_id")
        paths = _mask_paths(request)
        now = _now_ms()

        async def change(current: Schedule) -> Schedule:
            merged = to_proto(current)
            request.update_mask.MergeMessage(
                request.schedule, merged, replace_message_field=True, replace_repeated_field=True
            )
            spec = await self._spec(
                merged, call, now_ms=now, created_ms=current.created_ms, changed=paths
            )
            after = dataclasses.replace(
                current, **dataclasses.asdict(spec), version=current.version + 1, updated_ms=now
            )
            if not after.paused and any(getattr(after, f) != getattr(current, f) for f in _TIMING):
                after = dataclasses.replace(after, next_fire_ms=next_fire_ms(after, now))
            return after

        changed = await self._write(call, sid, request.expected_version, change)
        await self.audit.record(call, "schedule.update", schedule_id=sid, fields=sorted(paths))
        return to_proto(changed)

    async def pause(self, request: pb.PauseScheduleRequest, call: Call) -> pb.Schedule:
        sid = schedule_id_of(request.schedule_id, "schedule_id")
        now = _now_ms()

        async def change(current: Schedule) -> Schedule | None:
            if current.paused:
                return None
            return dataclasses.replace(
                current, paused=True, next_fire_ms=0, version=current.version + 1, updated_ms=now
            )

        paused = await self._write(call, sid, request.expected_version, change)
        await self.audit.record(call, "schedule.pause", schedule_id=sid)
        return to_proto(paused)

    async def resume(self, request: pb.ResumeScheduleRequest, call: Call) -> pb.Schedule:
        sid = schedule_id_of(request.schedule_id, "schedule_id")
        now = _now_ms()

        async def change(current: Schedule) -> Schedule | None:
            if not current.paused:
                return None
            resumed = dataclasses.replace(
                current, paused=False, version=current.version + 1, updated_ms=now
            )
            # From now on: fires missed while paused are not replayed.
            return dataclasses.replace(resumed, next_fire_ms=next_fire_ms(resumed, now))

        resumed = await self._write(call, sid, request.expected_version, change)
        await self.audit.record(call, "schedule.resume", schedule_id=sid)
        return to_proto(resumed)

    async def delete(
        self, request: pb.DeleteScheduleRequest, call: Call
    ) -> pb.DeleteScheduleResponse:
        sid = schedule_id_of(request.schedule_id, "schedule_id")
        for _ in range(WRITE_ATTEMPTS):
            current = await self.store.get(call.tenant, sid, deadline=call.deadline)
            if current is None:
                raise NotFound("schedule", sid)
            try:
                await self.store.delete(current, deadline=call.deadline)
            except StaleVersion:
                continue  # a fire or a change in between: delete what is there now
            await self.audit.record(call, "schedule.delete", schedule_id=sid)
            return pb.DeleteScheduleResponse(schedule_id=sid)
        raise Conflict("the schedule kept changing while it was being deleted; retry")

    async def _write(
        self,
        call: Call,
        sid: str,
        expected_version: int,
        change: Callable[[Schedule], Awaitable[Schedule | None]],
    ) -> Schedule:
        """Apply `change` to the stored schedule and write it, conditioned on the version
        it read; `change` returning None means nothing to write (the schedule as it is)."""
        for _ in range(WRITE_ATTEMPTS):
            current = await self.store.get(call.tenant, sid, deadline=call.deadline)
            if current is None:
                raise NotFound("schedule", sid)
            if expected_version and current.version != expected_version:
                raise FailedPrecondition(
                    "version",
                    f"the schedule is at version {current.version}, not {expected_version}: "
                    "it changed since it was read; read it again",
                    type_=VERSION_MISMATCH,
                )
            after = await change(current)
            if after is None:
                return current
            try:
                await self.store.replace(current, after, deadline=call.deadline)
            except StaleVersion:
                continue  # re-read: with expected_version set, the check above answers
            return after
        raise Conflict("the schedule kept changing while this call applied; retry")


def _mask_paths(request: pb.UpdateScheduleRequest) -> frozenset[str]:
    paths = list(request.update_mask.paths)
    if not paths:
        raise InvalidArgument.field(
            "update_mask", f"is required: name the fields to change ({', '.join(UPDATABLE)})"
        )
    violations = [
        FieldViolation(
            f"update_mask.paths[{i}]",
            f"{path!r} cannot be updated; updatable: {', '.join(UPDATABLE)}"
            + (" (paused: use PauseSchedule/ResumeSchedule)" if path == "paused" else ""),
        )
        for i, path in enumerate(paths)
        if path not in UPDATABLE
    ]
    if violations:
        raise InvalidArgument(violations)
    return frozenset(paths)
