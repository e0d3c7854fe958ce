"""The schedule RPCs over a real socket against the moto server: the round trip with the
items it leaves in the table, tenant isolation, and bad input with its field violations."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_edge.schedule_store import ScheduleStore
from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.schedules import items
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import TENANT, Edge, synthetic_request
from tests.integration.edge.test_rpcs import violations


def table_item(aws: RegionResources, key: items.Item) -> dict[str, Any] | None:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    found = ddb.get_item(TableName=aws.table_name, Key=key, ConsistentRead=True)
    return found.get("Item")


def due_of(aws: RegionResources, tenant: str, schedule_id: str) -> items.Due | None:
    item = table_item(aws, items.due_key(tenant, schedule_id))
    return None if item is None else items.due_from_item(item)


def schedule(**kwargs: Any) -> pb.Schedule:
    kwargs.setdefault("expression", "rate(5 minutes)")
    return pb.Schedule(template=synthetic_request(labels={"team": "ops"}), **kwargs)


async def create(edge: Edge, spec: pb.Schedule, key: str | None = None) -> pb.Schedule:
    request = pb.CreateScheduleRequest(schedule=spec)
    return await edge.stub.CreateSchedule(request, metadata=edge.auth(key))


async def test_create_get_list_update_pause_resume_delete(edge: Edge, aws: RegionResources) -> None:
    before_ms = time.time_ns() // 1_000_000
    created = await create(
        edge,
        schedule(expression="0 8 * * MON", time_zone="Europe/Berlin", description="weekly"),
    )
    sid = created.schedule_id
    assert sid.startswith("sch-")
    assert created.version == 1
    assert created.home_region == aws.region
    assert not created.paused
    assert created.overlap_policy == pb.OVERLAP_POLICY_SKIP
    fire = created.next_fire_time.ToDatetime()
    assert fire.weekday() == 0
    assert fire.minute == 0
    assert fire.hour in (6, 7)
    assert created.template.labels == {"team": "ops"}
    tenant = TENANT
    due = due_of(aws, tenant, sid)
    assert due is not None
    assert due.version == 1
    assert due.next_fire_ms == created.next_fire_time.ToMilliseconds()
    assert due.home_region == aws.region

    got = await edge.stub.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), metadata=edge.auth())
    assert got == created
    second = await create(edge, schedule())
    listed = await edge.stub.ListSchedules(pb.ListSchedulesRequest(), metadata=edge.auth())
    assert [s.schedule_id for s in listed.schedules] == [second.schedule_id, sid]  # newest first
    assert not listed.next_page_token
    page = await edge.stub.ListSchedules(pb.ListSchedulesRequest(page_size=1), metadata=edge.auth())
    assert [s.schedule_id for s in page.schedules] == [second.schedule_id]
    rest = await edge.stub.ListSchedules(
        pb.ListSchedulesRequest(page_size=1, page_token=page.next_page_token),
        metadata=edge.auth(),
    )
    assert [s.schedule_id for s in rest.schedules] == [sid]

    # Update the expression: re-planned and re-filed under the new version.
    updated = await edge.stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id=sid, expression="rate(1 hour)"),
            update_mask=FieldMask(paths=["expression"]),
            expected_version=1,
        ),
        metadata=edge.auth(),
    )
    assert updated.version == 2
    assert updated.expression == "rate(1 hour)"
    assert updated.description == "weekly"  # not in the mask: kept
    assert updated.create_time.ToMilliseconds() >= before_ms
    due = due_of(aws, tenant, sid)
    assert due is not None
    assert due.version == 2
    assert due.next_fire_ms == updated.next_fire_time.ToMilliseconds()
    assert due.next_fire_ms == created.create_time.ToMilliseconds() // 60_000 * 60_000 + 3_600_000

    # A stale expected version: FAILED_PRECONDITION, nothing written.
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await edge.stub.PauseSchedule(
            pb.PauseScheduleRequest(schedule_id=sid, expected_version=1), metadata=edge.auth()
        )
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(stale.value)  # type: ignore[arg-type]
    assert status is not None
    failure = error_details_pb2.PreconditionFailure()
    assert any(d.Unpack(failure) for d in status.details)
    assert failure.violations[0].type == "VERSION_MISMATCH"
    assert failure.violations[0].subject == "version"

    paused = await edge.stub.PauseSchedule(
        pb.PauseScheduleRequest(schedule_id=sid), metadata=edge.auth()
    )
    assert paused.paused
    assert paused.version == 3
    assert not paused.HasField("next_fire_time")
    assert due_of(aws, tenant, sid) is None
    again = await edge.stub.PauseSchedule(
        pb.PauseScheduleRequest(schedule_id=sid), metadata=edge.auth()
    )
    assert again == paused  # unchanged

    resumed = await edge.stub.ResumeSchedule(
        pb.ResumeScheduleRequest(schedule_id=sid, expected_version=3), metadata=edge.auth()
    )
    assert not resumed.paused
    assert resumed.version == 4
    assert resumed.next_fire_time.ToMilliseconds() > time.time_ns() // 1_000_000
    due = due_of(aws, tenant, sid)
    assert due is not None
    assert due.version == 4
    assert due.next_fire_ms == resumed.next_fire_time.ToMilliseconds()

    deleted = await edge.stub.DeleteSchedule(
        pb.DeleteScheduleRequest(schedule_id=sid), metadata=edge.auth()
    )
    assert deleted.schedule_id == sid
    assert table_item(aws, items.schedule_key(tenant, sid)) is None
    assert due_of(aws, tenant, sid) is None
    audit = edge.server.service.audit  # each write is in the tenant's audit log
    assert audit.failures == 0
    assert audit.written == 7  # 2 creates, update, pause twice, resume, delete
    count = table_item(aws, items.count_key(tenant))
    assert count is not None
    assert count[items.A_COUNT] == {"N": "1"}
    for call in (
        edge.stub.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), metadata=edge.auth()),
        edge.stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=sid), metadata=edge.auth()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await call
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_schedule_is_invisible_and_untouchable_to_another_tenant(
    edge: Edge, aws: RegionResources, other_key: str
) -> None:
    mine = await create(edge, schedule())
    sid = mine.schedule_id
    theirs = edge.auth(other_key)
    calls = {
        "get": edge.stub.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), metadata=theirs),
        "update": edge.stub.UpdateSchedule(
            pb.UpdateScheduleRequest(
                schedule=pb.Schedule(schedule_id=sid, description="mine now"),
                update_mask=FieldMask(paths=["description"]),
            ),
            metadata=theirs,
        ),
        "pause": edge.stub.PauseSchedule(pb.PauseScheduleRequest(schedule_id=sid), metadata=theirs),
        "resume": edge.stub.ResumeSchedule(
            pb.ResumeScheduleRequest(schedule_id=sid), metadata=theirs
        ),
        "delete": edge.stub.DeleteSchedule(
            pb.DeleteScheduleRequest(schedule_id=sid), metadata=theirs
        ),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, name
    listed = await edge.stub.ListSchedules(pb.ListSchedulesRequest(), metadata=theirs)
    assert list(listed.schedules) == []
    # Nothing of theirs reached my schedule.
    got = await edge.stub.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), metadata=edge.auth())
    assert got == mine
    assert due_of(aws, TENANT, sid) is not None


def _template(**kwargs: Any) -> pb.Schedule:
    return pb.Schedule(expression="rate(5 minutes)", template=synthetic_request(**kwargs))


# name: (schedule, the field its violation names)
BAD_SCHEDULES: dict[str, tuple[pb.Schedule, str]] = {
    "cron with 4 fields": (schedule(expression="0 8 * *"), "schedule.expression"),
    "cron that never fires": (schedule(expression="0 0 31 2 *"), "schedule.expression"),
    "rate of 0": (schedule(expression="rate(0 minutes)"), "schedule.expression"),
    "no expression": (schedule(expression=""), "schedule.expression"),
    "unknown zone": (schedule(time_zone="Mars/Olympus"), "schedule.time_zone"),
    "invalid kind": (
        pb.Schedule(expression="rate(5 minutes)", template=pb.SubmitReportRequest(kind="nope")),
        "schedule.template.kind",
    ),
    "http notify URL": (
        _template(notify=pb.Notify(url="http://example.com/hook")),
        "schedule.template.notify.url",
    ),
    "private-address notify URL": (
        _template(notify=pb.Notify(url="https://10.0.0.7/hook")),
        "schedule.template.notify.url",
    ),
    "schedule label": (
        _template(labels={"reportgrid-schedule": "sch-1"}),
        "schedule.template.labels[reportgrid-schedule]",
    ),
    "idempotency key": (_template(idempotency_key="k1"), "schedule.template.idempotency_key"),
    "multi-region durability": (
        _template(durability=pb.DURABILITY_MULTI_REGION),
        "schedule.template.durability",
    ),
    "no template": (pb.Schedule(expression="rate(5 minutes)"), "schedule.template"),
    "long description": (schedule(description="x" * 1025), "schedule.description"),
}


async def test_bad_schedules_are_refused_naming_the_field(edge: Edge, aws: RegionResources) -> None:
    for name, (spec, field) in BAD_SCHEDULES.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await create(edge, spec)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert field in violations(err.value), (name, violations(err.value))
    assert table_item(aws, items.count_key(TENANT)) is None  # nothing was written


async def test_end_before_start_and_bad_masks_are_refused(edge: Edge) -> None:
    spec = schedule()
    spec.start_time.FromSeconds(int(time.time()) + 7200)
    spec.end_time.FromSeconds(int(time.time()) + 3600)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(edge, spec)
    assert "schedule.end_time" in violations(err.value)

    sid = (await create(edge, schedule())).schedule_id
    for mask, field in (
        (FieldMask(), "update_mask"),
        (FieldMask(paths=["paused"]), "update_mask.paths[0]"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await edge.stub.UpdateSchedule(
                pb.UpdateScheduleRequest(schedule=pb.Schedule(schedule_id=sid), update_mask=mask),
                metadata=edge.auth(),
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edge.stub.UpdateSchedule(
            pb.UpdateScheduleRequest(
                schedule=pb.Schedule(schedule_id=sid, expression="61 * * * *"),
                update_mask=FieldMask(paths=["expression"]),
            ),
            metadata=edge.auth(),
        )
    assert "schedule.expression" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edge.stub.GetSchedule(
            pb.GetScheduleRequest(schedule_id="sch-XYZ"), metadata=edge.auth()
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "schedule_id" in violations(err.value)
    for request, field in (
        (pb.ListSchedulesRequest(page_size=-1), "page_size"),
        (pb.ListSchedulesRequest(page_token="AAAA.bbbb"), "page_token"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await edge.stub.ListSchedules(request, metadata=edge.auth())
        assert field in violations(err.value)


async def test_the_tenant_cap_is_resource_exhausted(
    edge: Edge, aws: RegionResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "MAX_SCHEDULES_PER_TENANT", 2)
    first = await create(edge, schedule())
    await create(edge, schedule())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(edge, schedule())
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await edge.stub.DeleteSchedule(
        pb.DeleteScheduleRequest(schedule_id=first.schedule_id), metadata=edge.auth()
    )
    last = await create(edge, schedule())  # room again

    # A counter that lost its item (a cross-region race) is not taken below zero.
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    ddb.delete_item(TableName=aws.table_name, Key=items.count_key(TENANT))
    await edge.stub.DeleteSchedule(
        pb.DeleteScheduleRequest(schedule_id=last.schedule_id), metadata=edge.auth()
    )
    assert table_item(aws, items.count_key(TENANT)) is None
    assert table_item(aws, items.schedule_key(TENANT, last.schedule_id)) is None


SCHEDULE_METHODS = (
    "CreateSchedule",
    "GetSchedule",
    "ListSchedules",
    "UpdateSchedule",
    "PauseSchedule",
    "ResumeSchedule",
    "DeleteSchedule",
)


async def test_corrupt_bytes_on_every_schedule_method_are_invalid_argument(edge: Edge) -> None:
    # A truncated varint and a length that runs past the end: no message of any type.
    for method in SCHEDULE_METHODS:
        for payload in (b"\x08", b"\x0a\x05ab"):
            call = edge.channel.unary_unary(f"/reportgrid.v1.ReportService/{method}")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(payload, metadata=edge.auth(), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "Traceback" not in (err.value.details() or "")


async def test_a_write_that_loses_a_race_is_applied_again_to_the_fresh_schedule(
    edge: Edge, aws: RegionResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = (await create(edge, schedule(description="mine"))).schedule_id
    original = ScheduleStore.replace
    raced: list[int] = []

    async def racing(self: ScheduleStore, before: Any, after: Any, *, deadline: float) -> None:
        if not raced:  # a fire lands between this call's read and its write
            raced.append(before.version)
            client("dynamodb", aws.region, aws.endpoint_url).update_item(
                TableName=aws.table_name,
                Key=items.schedule_key(TENANT, sid),
                UpdateExpression="SET #v = :v, fired = :f",
                ExpressionAttributeNames={"#v": items.A_VERSION},
                ExpressionAttributeValues={":v": {"N": "2"}, ":f": {"N": "1"}},
            )
        await original(self, before, after, deadline=deadline)

    monkeypatch.setattr(ScheduleStore, "replace", racing)
    updated = await edge.stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id=sid, expression="rate(1 hour)"),
            update_mask=FieldMask(paths=["expression"]),
        ),
        metadata=edge.auth(),
    )
    assert raced == [1]
    assert updated.version == 3  # applied to version 2, the fire's
    assert updated.fired_count == 1  # the fire's change is kept
    assert updated.expression == "rate(1 hour)"
    due = due_of(aws, TENANT, sid)
    assert due is not None
    assert due.version == 3
