"""The scheduler handler on the moto server: schedule and due items written as the edge
writes them (reportgrid/schedules/items.py), the handler invoked with EventBridge
Scheduler's event for a minute, then the task stream read back and the table inspected."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.struct_pb2 import Struct

from functions.scheduler import fire as fire_module
from functions.scheduler import handler as scheduler_handler
from functions.scheduler.fire import Firer
from reportgrid import claims, records, resources, tasks, tenants
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord
from reportgrid.schedules import items
from reportgrid.schedules.due import PEER_GRACE
from reportgrid.schedules.fires import SCHEDULE_LABEL, fire_key, new_schedule_id
from reportgrid.schedules.items import Overlap, Schedule
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy

TENANT = "tenant-a"
PEER = "eu-west-1"
# A minute of the test's own (no wall clock in the plans): 2026-03-02 08:00 UTC.
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class _Context:
    function_name = "scheduler"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:scheduler"
    aws_request_id = "test"

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _event(at: datetime) -> dict[str, str]:
    # As Scheduler fills <aws.scheduler.scheduled-time>: "2022-03-22T18:59:43Z".
    return {"scheduled_time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}


@pytest.fixture
def ddb(aws: RegionResources) -> Any:
    return client("dynamodb", aws.region, aws.endpoint_url)


@pytest.fixture
def wired(aws: RegionResources, settings: Settings) -> Iterator[Firer]:
    from reportgrid.engine.kinds import REGISTRY

    firer = Firer(
        dynamodb=client("dynamodb", aws.region, aws.endpoint_url),
        kinesis=client("kinesis", aws.region, aws.endpoint_url),
        table_name=settings.table_name,
        stream_name=settings.task_stream_name,
        region=settings.region,
        codec=settings.id_codec(),
        registry=REGISTRY,
        inputs=InputPolicy.of(settings.input_buckets),
    )
    scheduler_handler.configure(scheduler_handler.Dependencies(firer=firer))
    yield firer
    scheduler_handler.configure(None)


def _template(**kwargs: Any) -> bytes:
    params = Struct()
    params.update({"output_rows": 1})
    request = pb.SubmitReportRequest(kind="synthetic", params=params, **kwargs)
    request.labels["team"] = "ops"
    return request.SerializeToString(deterministic=True)


def _put(ddb: Any, schedule: Schedule) -> Schedule:
    """The schedule and (while active) its due item, as CreateSchedule writes them."""
    ddb.put_item(TableName=resources.TABLE_NAME, Item=items.to_item(schedule))
    if schedule.active:
        ddb.put_item(TableName=resources.TABLE_NAME, Item=items.due_item(schedule))
    return schedule


def _schedule(region: str, **changes: Any) -> Schedule:
    base = Schedule(
        schedule_id=new_schedule_id(),
        tenant=TENANT,
        expression="rate(5 minutes)",
        time_zone="UTC",
        template=_template(),
        home_region=region,
        created_ms=_ms(T0 - timedelta(days=1)),
        updated_ms=_ms(T0 - timedelta(days=1)),
        next_fire_ms=_ms(T0),
    )
    return dataclasses.replace(base, **changes)


def _stored(ddb: Any, schedule: Schedule) -> Schedule:
    item = ddb.get_item(
        TableName=resources.TABLE_NAME,
        Key=items.schedule_key(schedule.tenant, schedule.schedule_id),
        ConsistentRead=True,
    )["Item"]
    return items.from_item(item)


def _due(ddb: Any, schedule: Schedule) -> items.Due | None:
    item = ddb.get_item(
        TableName=resources.TABLE_NAME,
        Key=items.due_key(schedule.tenant, schedule.schedule_id),
        ConsistentRead=True,
    ).get("Item")
    return None if item is None else items.due_from_item(item)


def _tasks(aws: RegionResources) -> list[TaskRecord]:
    kinesis = client("kinesis", aws.region, aws.endpoint_url)
    found: list[TaskRecord] = []
    for shard in kinesis.list_shards(StreamName=aws.stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=aws.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        found += [
            tasks.decode(r["Data"]) for r in kinesis.get_records(ShardIterator=iterator)["Records"]
        ]
    return found


def _claims(ddb: Any) -> list[dict[str, Any]]:
    scanned = ddb.scan(TableName=resources.TABLE_NAME)["Items"]
    return [
        i
        for i in scanned
        if i[resources.PARTITION_KEY]["S"].startswith(resources.IDEMPOTENCY_PREFIX)
    ]


def _metrics(captured: str) -> dict[str, float]:
    """The EMF document's values the run printed (Powertools Metrics: one per run)."""
    [doc] = [json.loads(line) for line in captured.splitlines() if line.startswith('{"_aws"')]
    names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    return {name: sum(doc[name]) if isinstance(doc[name], list) else doc[name] for name in names}


def _run(at: datetime, context: _Context | None = None) -> dict[str, Any]:
    result: dict[str, Any] = scheduler_handler.handler(_event(at), context or _Context())
    return result


def test_a_due_schedule_fires_one_task_with_its_key_and_labels(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    # Given a 5-minute rate due at T0, and another not due until T0 + 5 min
    schedule = _put(ddb, _schedule(aws.region))
    later = _put(ddb, _schedule(aws.region, next_fire_ms=_ms(T0 + 5 * MINUTE)))

    # When the run for T0 + 20 s goes
    result = _run(T0 + timedelta(seconds=20))

    # Then exactly one task: the due schedule's, keyed and labelled for the minute
    assert result["outcomes"] == {"fired": 1}
    [task] = _tasks(aws)
    assert task.tenant == TENANT
    assert task.home_region == aws.region
    assert task.request.idempotency_key == fire_key(schedule.schedule_id, T0)
    assert dict(task.request.labels) == {"team": "ops", SCHEDULE_LABEL: schedule.schedule_id}
    assert task.request.kind == "synthetic"
    assert task.trace_header.startswith("Root=1-")
    assert task.HasField("accept_time")
    # The claim is the edge's claim item, for the tenant and the fire's key
    [claim] = _claims(ddb)
    pk = claims.claim_key(TENANT, fire_key(schedule.schedule_id, T0))
    assert claim[resources.PARTITION_KEY]["S"] == pk[resources.PARTITION_KEY]
    assert claims.claim_of(claim).report_id == task.report_id
    # And the schedule moved on: next fire T0 + 5 min, its due item re-filed there
    stored = _stored(ddb, schedule)
    assert stored.version == schedule.version + 1
    assert stored.last_report_id == task.report_id
    assert stored.last_fire_ms == _ms(T0)
    assert stored.fired == 1
    assert stored.next_fire_ms == _ms(T0 + 5 * MINUTE)
    due = _due(ddb, schedule)
    assert due is not None
    assert due.next_fire_ms == stored.next_fire_ms
    assert due.version == stored.version
    assert _stored(ddb, later) == later


def test_the_same_minute_twice_and_a_crash_before_the_transaction_are_one_report(
    aws: RegionResources, ddb: Any, wired: Firer, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = _put(ddb, _schedule(aws.region))

    # Given a run that submitted but crashed before its transaction
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the Lambda died here")

    monkeypatch.setattr(wired, "_commit", crash)
    first = _run(T0)
    assert first["outcomes"] == {"failed": 1}
    monkeypatch.undo()
    assert _stored(ddb, schedule) == schedule  # still due at T0

    # When the next run goes, and a second invocation for the same minute after it
    again = _run(T0 + MINUTE)
    stored = _stored(ddb, schedule)
    # (a duplicate invocation of the same minute, with the due item as it was)
    ddb.put_item(TableName=resources.TABLE_NAME, Item=items.to_item(schedule))
    ddb.put_item(TableName=resources.TABLE_NAME, Item=items.due_item(schedule))
    twice = _run(T0 + MINUTE)

    # Then one claim and one report id, however many times its task was written
    assert again["outcomes"] == {"deduplicated": 1}
    assert twice["outcomes"] == {"deduplicated": 1}
    assert len(_claims(ddb)) == 1
    written = _tasks(aws)
    assert len(written) == 3
    assert len({t.report_id for t in written}) == 1
    assert stored.last_report_id == written[0].report_id


def test_paused_ended_and_not_yet_due_schedules_fire_nothing(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    # A paused schedule has no due item; one past its end is due and gets its item deleted
    _put(ddb, _schedule(aws.region, paused=True))
    ended = _put(ddb, _schedule(aws.region, end_ms=_ms(T0 - MINUTE)))

    result = _run(T0 + 30 * MINUTE)

    assert result["outcomes"] == {"ended": 1}
    assert _tasks(aws) == []
    assert _due(ddb, ended) is None
    assert _stored(ddb, ended).next_fire_ms == 0


def test_overlap_skip_while_the_last_report_runs(
    aws: RegionResources,
    ddb: Any,
    wired: Firer,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a skip schedule whose last report is RUNNING, and an allow one alike
    rid = settings.id_codec().new(TENANT, aws.region).value
    running = ReportRecord(rid, TENANT, "synthetic", State.RUNNING, _ms(T0 - MINUTE))
    ddb.put_item(TableName=resources.TABLE_NAME, Item=records.to_item(running))
    skip = _put(ddb, _schedule(aws.region, last_report_id=rid))
    allow = _put(ddb, _schedule(aws.region, last_report_id=rid, overlap=Overlap.ALLOW))

    result = _run(T0)

    assert result["outcomes"] == {"skipped": 1, "fired": 1}
    counted = _metrics(capsys.readouterr().out)
    assert counted["Fired"] == 1
    assert counted["Skipped"] == 1
    assert counted["Failed"] == 0
    assert counted["FireLagSeconds"] > 0
    [task] = _tasks(aws)
    assert task.request.labels[SCHEDULE_LABEL] == allow.schedule_id
    stored = _stored(ddb, skip)
    assert (stored.skipped, stored.fired, stored.last_report_id) == (1, 0, rid)
    assert stored.next_fire_ms == _ms(T0 + 5 * MINUTE)


def test_three_hours_overdue_fires_once_and_counts_the_dropped(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    # Given a 5-minute rate whose next fire was 3 h ago (an outage)
    schedule = _put(ddb, _schedule(aws.region, next_fire_ms=_ms(T0 - timedelta(hours=3))))

    result = _run(T0)

    # Then one fire, the latest missed (T0 itself), and the other 36 dropped
    assert result["outcomes"] == {"fired": 1}
    assert result["dropped"] == 36
    [task] = _tasks(aws)
    assert task.request.idempotency_key == fire_key(schedule.schedule_id, T0)
    stored = _stored(ddb, schedule)
    assert stored.skipped == 36
    assert stored.next_fire_ms == _ms(T0 + 5 * MINUTE)


def test_a_peer_schedule_fires_here_only_after_the_grace_period(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    schedule = _put(ddb, _schedule(PEER))

    early = _run(T0 + PEER_GRACE - MINUTE)
    assert early["outcomes"] == {"not_here": 1}
    assert _tasks(aws) == []

    late = _run(T0 + PEER_GRACE)
    assert late["outcomes"] == {"fired": 1}
    # The peer fires the home region's missed minute, not its current one (T0 + 5 min,
    # which the home region may be firing right now)
    [task] = _tasks(aws)
    assert task.request.idempotency_key == fire_key(schedule.schedule_id, T0)
    assert late["dropped"] == 0
    assert _stored(ddb, schedule).next_fire_ms == _ms(T0 + 5 * MINUTE)


def test_a_disabled_tenant_and_an_invalid_template_submit_nothing(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    other = "tenant-b"
    ddb.put_item(
        TableName=resources.TABLE_NAME,
        Item=tenants.to_item(tenants.Tenant(tenant=other, disabled=True)),
    )
    disabled = _put(ddb, _schedule(aws.region, tenant=other))
    invalid = _put(
        ddb, _schedule(aws.region, template=pb.SubmitReportRequest(kind="gone").SerializeToString())
    )
    # Multi-region durability is not offered to schedules (docs/SCHEDULES.md)
    durable = _put(
        ddb, _schedule(aws.region, template=_template(durability=pb.DURABILITY_MULTI_REGION))
    )

    result = _run(T0)

    assert result["outcomes"] == {"tenant_disabled": 1, "invalid": 2}
    assert _tasks(aws) == []
    assert _stored(ddb, disabled).skipped == 1
    assert _stored(ddb, invalid).skipped == 1
    assert _stored(ddb, durable).skipped == 1
    assert _stored(ddb, durable).next_fire_ms == _ms(T0 + 5 * MINUTE)


def test_quotas_apply_and_a_template_changed_inside_the_minute_is_already_fired(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    ddb.put_item(
        TableName=resources.TABLE_NAME,
        Item=tenants.to_item(
            tenants.Tenant(tenant=TENANT, quotas=tenants.Quotas(retention_default_seconds=3600))
        ),
    )
    schedule = _put(ddb, _schedule(aws.region, overlap=Overlap.ALLOW))
    _run(T0)
    [task] = _tasks(aws)
    assert task.request.ttl.seconds == 3600  # the tenant's default retention

    # The template updated and the due item filed back at T0 (as if the first run's
    # transaction had been lost): the minute's key now fingerprints another request
    changed = dataclasses.replace(
        _stored(ddb, schedule),
        template=_template(output_format=pb.OUTPUT_FORMAT_JSON),
        next_fire_ms=_ms(T0),
    )
    _put(ddb, changed)
    result = _run(T0 + MINUTE)
    assert result["outcomes"] == {"already_fired": 1}
    assert len(_tasks(aws)) == 1
    assert _stored(ddb, schedule).last_report_id == task.report_id


def test_no_fire_starts_without_time_left_and_a_bad_event_fires_nothing(
    aws: RegionResources, ddb: Any, wired: Firer, capsys: pytest.CaptureFixture[str]
) -> None:
    schedule = _put(ddb, _schedule(aws.region))

    short = _run(T0, _Context(remaining_ms=fire_module.TIME_MARGIN_MS - 1))
    assert short["outcomes"] == {"deferred": 1}
    assert _stored(ddb, schedule) == schedule
    assert _metrics(capsys.readouterr().out)["Deferred"] == 1

    bad = scheduler_handler.handler({"scheduled_time": "next tuesday"}, _Context())
    assert "not an ISO 8601 time" in bad["error"]
    counted = _metrics(capsys.readouterr().out)
    assert counted["InvalidEvents"] == 1
    assert counted["Failed"] == 1
    assert _tasks(aws) == []


def test_a_due_item_behind_its_schedule_is_left_alone(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    # Given a due item still filed at T0 for version 1, while the schedule (version 2, as
    # an update left it) fires next at T0 + 5 min: what a lagging index shows
    schedule = _schedule(aws.region)
    ddb.put_item(TableName=resources.TABLE_NAME, Item=items.due_item(schedule))
    moved = dataclasses.replace(schedule, version=2, next_fire_ms=_ms(T0 + 5 * MINUTE))
    ddb.put_item(TableName=resources.TABLE_NAME, Item=items.to_item(moved))

    result = _run(T0)

    assert result["outcomes"] == {"stale": 1}
    assert _tasks(aws) == []
    assert _stored(ddb, schedule) == moved


def test_one_broken_schedule_does_not_stop_the_others(
    aws: RegionResources, ddb: Any, wired: Firer
) -> None:
    good = _put(ddb, _schedule(aws.region))
    broken = _put(ddb, _schedule(aws.region))
    item = items.to_item(broken)
    del item["template"]  # an item no version of the edge writes
    ddb.put_item(TableName=resources.TABLE_NAME, Item=item)

    result = _run(T0)

    assert result["outcomes"] == {"fired": 1, "failed": 1}
    [task] = _tasks(aws)
    assert task.request.labels[SCHEDULE_LABEL] == good.schedule_id
    assert _due(ddb, broken) is not None  # still due: fired once the item is repaired


def test_a_user_write_during_the_fire_wins_and_the_minute_stays_one_report(
    aws: RegionResources, ddb: Any, wired: Firer, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = _put(ddb, _schedule(aws.region, overlap=Overlap.ALLOW))
    edited = dataclasses.replace(schedule, version=2, description="edited")
    real_put = wired._put

    def put_then_user_edits(task: TaskRecord) -> None:
        real_put(task)
        _put(ddb, edited)  # UpdateSchedule's transaction, between our submit and commit

    monkeypatch.setattr(wired, "_put", put_then_user_edits)
    first = _run(T0)
    monkeypatch.undo()

    assert first["outcomes"] == {"conflict": 1}
    assert _stored(ddb, schedule) == edited  # not overwritten
    # The user's write re-filed the due item at T0 (timing unchanged): the next run fires
    # the minute again, and its claim makes it the same report
    again = _run(T0 + MINUTE)
    assert again["outcomes"] == {"deduplicated": 1}
    assert len({t.report_id for t in _tasks(aws)}) == 1
    assert _stored(ddb, schedule).version == 3
