"""The task wire format and the report item mapping."""

from __future__ import annotations

import zlib

import pytest

from reportgrid import records, resources, tasks
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb


def _task() -> TaskRecord:
    task = TaskRecord(report_id="rpt_x", tenant="acme", home_region="us-east-1")
    task.request.kind = "summary"
    task.request.input.inline_data = b"a,b\n1,2\n"
    return task


def test_task_round_trips_in_bytes_and_text() -> None:
    task = _task()
    assert tasks.decode(tasks.encode(task)) == task
    assert tasks.decode_text(tasks.encode_text(task)) == task
    assert tasks.encode(task)[:2] == b"R\x01"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"R",
        b"X\x01abc",
        b"R\x09" + _task().SerializeToString(),
        b"R\x01\xff\xff\xff",
        b"R\x01",
    ],
)
def test_undecodable_tasks_are_rejected(data: bytes) -> None:
    with pytest.raises(tasks.UndecodableTask):
        tasks.decode(data)


def test_undecodable_queue_body() -> None:
    with pytest.raises(tasks.UndecodableTask, match="base64"):
        tasks.decode_text("not base64 !!")


def _record(**changes: object) -> records.ReportRecord:
    base = records.ReportRecord(
        report_id="rpt_a",
        tenant="acme",
        kind="summary",
        state=State.SUCCEEDED,
        created_ms=1_000,
        started_ms=2_000,
        ended_ms=3_000,
        expires_at=10_000,
        attempts=1,
        region="eu-west-1",
        result=records.ResultInfo(
            size_bytes=4,
            content_type="text/csv",
            sha256="ab",
            row_count=1,
            generator_version=1,
            inline_compressed=zlib.compress(b"a,b\n"),
        ),
    )
    return base.with_(**changes)


def test_item_round_trip_and_keys() -> None:
    record = _record()
    item = records.to_item(record)
    assert item[resources.PARTITION_KEY] == {"S": "report#rpt_a"}
    assert item[resources.TTL_ATTRIBUTE] == {"N": "10000"}
    assert item[resources.TENANT_INDEX_SORT_KEY] == {"S": "0000000001000#rpt_a"}
    assert item[resources.TENANT_INDEX_PARTITION_KEY]["S"].startswith("acme#")
    assert records.from_item(item) == record


def test_proto_view_inlines_small_content_only_when_asked() -> None:
    record = _record()
    plain = records.to_proto(record, now_ms=5_000)
    assert plain.state == pb.REPORT_STATE_SUCCEEDED
    assert plain.result.content == b""
    assert not plain.result.download_required
    with_content = records.to_proto(record, now_ms=5_000, include_content=True)
    assert with_content.result.content == b"a,b\n"
    assert with_content.end_time.ToMilliseconds() == 3_000


def test_terminal_report_past_retention_reads_as_expired() -> None:
    view = records.to_proto(_record(), now_ms=10_000 * 1000)
    assert view.state == pb.REPORT_STATE_EXPIRED
    assert not view.HasField("result")


def test_failed_report_carries_its_error() -> None:
    view = records.to_proto(
        _record(
            state=State.FAILED,
            result=None,
            error_reason="MISSING_COLUMN",
            error_message="column 'price' is not in the input",
        ),
        now_ms=5_000,
    )
    assert (view.error.reason, view.error.message) == (
        "MISSING_COLUMN",
        "column 'price' is not in the input",
    )


def test_tenant_shards_spread() -> None:
    shards = {records.tenant_shard_of(f"rpt_{i}") for i in range(200)}
    assert shards == set(range(resources.TENANT_INDEX_SHARDS))


def test_cache_encoding_round_trips_bytes_and_all() -> None:
    record = _record(lease_owner="w1", lease_until_ms=9, cancel_requested=True)
    assert records.decode_record(records.encode_record(record)) == record
    assert records.decode_record(records.encode_record(record).decode()) == record
