"""The task wire format and the report item mapping."""

from __future__ import annotations

import zlib

import pytest
from google.rpc import code_pb2

from reportgrid import ids, records, resources, tasks
from reportgrid.client import error_info
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


# A Kinesis record's data and partition key together (PutRecords, "Each record in the request
# can be as large as 1 MiB ... including partition keys"); an SQS message body since 2026
# (https://aws.amazon.com/blogs/compute/more-room-to-build-serverless-services-now-support-payloads-up-to-1-mb).
KINESIS_RECORD_BYTES = 1024 * 1024
SQS_MESSAGE_BYTES = 1024 * 1024


def _largest_task() -> TaskRecord:
    """The largest task the edge can build: a request of exactly the gRPC receive limit
    (the server refuses a larger one before any handler runs), the longest id, tenant and
    region, every optional field set."""
    request = pb.SubmitReportRequest(
        kind="summary",
        idempotency_key="k" * 128,
        output_format=pb.OUTPUT_FORMAT_MARKDOWN,
        durability=pb.DURABILITY_MULTI_REGION,
    )
    request.params.update({"aggregates": [{"op": "count"}]})
    request.ttl.seconds = 90 * 24 * 3600
    request.input.format = pb.DATA_FORMAT_CSV
    request.input.inline_data = b"x" * resources.MAX_RECEIVE_MESSAGE_BYTES
    # Trim the input until the whole request is exactly the limit (the length prefix of the
    # field shrinks with it, so step down one byte at a time near the end).
    while request.ByteSize() > resources.MAX_RECEIVE_MESSAGE_BYTES:
        excess = request.ByteSize() - resources.MAX_RECEIVE_MESSAGE_BYTES
        request.input.inline_data = request.input.inline_data[: -max(1, excess - 8)]
    assert request.ByteSize() == resources.MAX_RECEIVE_MESSAGE_BYTES
    task = TaskRecord(
        report_id=ids.PREFIX + "a" * (ids.ENCODED_LEN - len(ids.PREFIX)),
        tenant="t" * 64,  # ids.validate_tenant's longest
        home_region="r" * 32,  # longer than any AWS region name
        request=request,
        mirrored=True,
    )
    task.accept_time.seconds, task.accept_time.nanos = 253_402_300_799, 999_999_999
    return task


def test_the_largest_task_fits_in_one_kinesis_record_and_one_sqs_message() -> None:
    # Given the largest task the submit limits allow
    task = _largest_task()
    # Then it fits in one Kinesis record with its partition key (the report id), and in one
    # SQS message as the queues carry it (base64, for the heavy and standby queues)
    assert len(tasks.encode(task)) + len(task.report_id.encode()) <= KINESIS_RECORD_BYTES
    assert len(tasks.encode_text(task).encode()) <= SQS_MESSAGE_BYTES
    assert tasks.decode(tasks.encode(task)) == task


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
    # The item outlives the task log's retention of its id, whatever the report's ttl.
    assert item[resources.TTL_ATTRIBUTE] == {
        "N": str(1 + (resources.TASK_RETENTION_HOURS + 1) * 3600)
    }
    assert item[records.A_EXPIRES] == {"N": "10000"}
    assert item[resources.TENANT_INDEX_SORT_KEY] == {"S": "0000000001000#rpt_a"}
    assert item[resources.TENANT_INDEX_PARTITION_KEY]["S"].startswith("acme#")
    assert records.from_item(item) == record


def test_a_long_retention_is_the_items_ttl_and_old_items_read_their_expiry_from_it() -> None:
    far = 1 + 90 * 24 * 3600
    item = records.to_item(_record(expires_at=far))
    assert item[resources.TTL_ATTRIBUTE] == item[records.A_EXPIRES] == {"N": str(far)}
    del item[records.A_EXPIRES]
    assert records.from_item(item).expires_at == far


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
    info = error_info(view)
    assert info is not None
    assert (view.error.code, view.error.message) == (
        code_pb2.INVALID_ARGUMENT,
        "column 'price' is not in the input",
    )
    assert (info.reason, info.domain) == ("MISSING_COLUMN", "reportgrid.io")


def test_tenant_shards_spread() -> None:
    shards = {records.tenant_shard_of(f"rpt_{i}") for i in range(200)}
    assert shards == set(range(resources.TENANT_INDEX_SHARDS))


def test_cache_encoding_round_trips_bytes_and_all() -> None:
    record = _record(lease_owner="w1", lease_until_ms=9, cancel_requested=True)
    assert records.decode_record(records.encode_record(record)) == record
    assert records.decode_record(records.encode_record(record).decode()) == record
