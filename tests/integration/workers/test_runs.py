"""The run's promises: failures end FAILED with a message naming the problem, duplicates
give one report and one result, a lost write reply is recognised, large results go to S3,
cancellation before and during a run, and Redis (cache + pub/sub) without ever failing a
report."""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from botocore.exceptions import ConnectionClosedError

from functions.notify import Notifier
from functions.runner import Outcome, Services, run_in_process
from functions.store import ReportStore
from reportgrid import intents, records, resources
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.workers.conftest import TENANT, Region, make_task

SALES = b"region,amount,ts\neu,10,2024-01-01T00:00:00Z\nus,oops,2024-01-02T00:00:00Z\n"


@pytest.mark.parametrize(
    ("params", "data", "reason", "mentions"),
    [
        (
            {"group_by": ["country"], "aggregates": [{"op": "count"}]},
            SALES,
            "MISSING_COLUMN",
            ["'country'", "params.group_by[0]", "'region'"],
        ),
        (
            {"aggregates": [{"op": "sum", "column": "amount"}]},
            SALES,
            "INVALID_VALUE",
            ["'amount'", "'oops'"],
        ),
        (
            {
                "aggregates": [{"op": "count"}],
                "filters": [{"column": "ts", "op": ">", "value": "soon"}],
            },
            b"region,ts\neu,2024-01-01 00:00:00\n",
            "INVALID_VALUE",
            ["'soon'", "'ts'", "params.filters[0].value"],
        ),
        (
            {"aggregates": [{"op": "count"}]},
            b'[{"a": 1}, {not json',
            "INPUT_UNREADABLE",
            ["JSON"],
        ),
    ],
    ids=["missing-column", "not-a-number", "bad-filter-value", "unreadable"],
)
def test_bad_input_ends_failed_with_a_named_reason(
    region: Region, params: dict[str, Any], data: bytes, reason: str, mentions: list[str]
) -> None:
    fmt = pb.DATA_FORMAT_JSON if data.startswith(b"[") else pb.DATA_FORMAT_CSV
    task = make_task(region.settings, "summary", params, inline=data, data_format=fmt)
    result = region.runner().run(task)
    assert result.outcome is Outcome.FAILED
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.FAILED
    assert record.error_reason == reason
    for text in mentions:
        assert text in record.error_message
    assert record.attempts == 1  # failed once, never retried


def test_invalid_params_and_missing_s3_input_fail(region: Region) -> None:
    bad = make_task(region.settings, "summary", {"aggregates": [{"op": "median"}]}, inline=SALES)
    assert region.runner().run(bad).outcome is Outcome.FAILED
    record = region.get(bad.report_id)
    assert record is not None
    assert record.error_reason == "INVALID_PARAMS"
    assert "params.aggregates[0].op" in record.error_message

    missing = make_task(
        region.settings,
        "summary",
        {"aggregates": [{"op": "count"}]},
        s3_uri=f"s3://{region.aws.input_bucket}/{resources.tenant_input_prefix(TENANT)}k.csv",
    )
    assert region.runner().run(missing).outcome is Outcome.FAILED
    record = region.get(missing.report_id)
    assert record is not None
    assert record.error_reason == "INPUT_UNREADABLE"
    assert missing.request.input.s3_uri in record.error_message


def test_sql_metacharacters_in_names_and_values_are_data(region: Region) -> None:
    data = b'"na""me; DROP TABLE input;--",v\nx,1\ny,2\n'
    params = {
        "group_by": ['na"me; DROP TABLE input;--'],
        "aggregates": [{"op": "sum", "column": "v"}],
        "filters": [
            {"column": 'na"me; DROP TABLE input;--', "op": "in", "value": ["x", "' OR 1=1 --"]}
        ],
    }
    task = make_task(region.settings, "summary", params, inline=data)
    assert region.runner().run(task).outcome is Outcome.SUCCEEDED
    record = region.get(task.report_id)
    assert record is not None
    assert record.result is not None
    assert zlib.decompress(record.result.inline_compressed or b"") == (
        b'"na""me; DROP TABLE input;--",sum_v\nx,1\n'
    )


def _light(region: Region) -> Any:
    return make_task(region.settings, "synthetic", {"cpu_ms": 300, "output_rows": 10, "seed": 1})


def test_sequential_duplicate_is_a_noop(region: Region) -> None:
    task = _light(region)
    assert region.runner().run(task).outcome is Outcome.SUCCEEDED
    first = region.get(task.report_id)
    assert region.runner().run(task).outcome is Outcome.NOOP
    assert region.get(task.report_id) == first  # not rewritten


def test_concurrent_duplicates_run_once(region: Region) -> None:
    task = _light(region)
    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(
            o.outcome.value for o in pool.map(lambda _: region.runner().run(task), range(2))
        )
    # One ran it; the other found it held (BUSY) or already done (NOOP).
    assert outcomes.count("SUCCEEDED") == 1
    assert set(outcomes) - {"SUCCEEDED"} <= {"BUSY", "NOOP"}
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.SUCCEEDED
    assert record.attempts == 1


def test_lost_write_reply_is_retried_safely(region: Region) -> None:
    # Given a DynamoDB client that commits every put but loses the first two replies
    ddb = region.services.store._ddb
    lost: list[str] = []

    def drop_reply(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if len(lost) < 2 and http_response.status_code == 200:
            lost.append("put")
            raise ConnectionClosedError(endpoint_url="moto")

    ddb.meta.events.register("after-call.dynamodb.PutItem", drop_reply)
    try:
        task = _light(region)
        result = region.runner().run(task)
    finally:
        ddb.meta.events.unregister("after-call.dynamodb.PutItem", drop_reply)
    # Then the run recognised its own writes and finished once
    assert len(lost) == 2
    assert result.outcome is Outcome.SUCCEEDED
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.SUCCEEDED
    assert record.attempts == 1


def test_large_result_goes_to_s3_byte_identical(region: Region) -> None:
    rows, per_row = 4000, 500
    task = make_task(
        region.settings,
        "synthetic",
        {"output_rows": rows, "output_bytes": rows * per_row, "seed": 9},
    )
    assert region.runner().run(task).outcome is Outcome.SUCCEEDED
    record = region.get(task.report_id)
    assert record is not None
    assert record.result is not None
    info = record.result
    assert info.inline_compressed is None
    assert info.s3_key == resources.result_object_key(task.report_id)
    obj = region.services.s3.get_object(Bucket=region.settings.results_bucket, Key=info.s3_key)
    assert obj["ContentLength"] > resources.MAX_INLINE_RESULT_BYTES
    data = zlib.decompress(obj["Body"].read())
    assert len(data) == info.size_bytes
    assert hashlib.sha256(data).hexdigest() == info.sha256
    assert data.splitlines()[0] == b"row,value,payload"
    assert len(data.splitlines()) == rows + 1


def _request_cancel(region: Region, report_id: str) -> None:
    """As the edge does: a cancel-request item of its own; the report item is untouched."""
    region.services.store._ddb.put_item(
        TableName=region.settings.table_name,
        Item=intents.cancel_item(report_id, TENANT, requested_ms=1, created_ms=None),
    )


def test_cancel_before_start(region: Region) -> None:
    # Given a cancel requested before any worker wrote the report (no report item at all)
    task = _light(region)
    _request_cancel(region, task.report_id)
    assert region.get(task.report_id) is None
    # Then the run ends it CANCELLED without running it, and records why
    assert region.runner().run(task).outcome is Outcome.CANCELLED
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.CANCELLED
    assert record.cancel_requested
    assert record.result is None


def _delete_as_the_edge_does(region: Region, report_id: str) -> None:
    ddb = region.services.store._ddb
    ddb.put_item(
        TableName=region.settings.table_name,
        Item=intents.tombstone_item(report_id, TENANT, deleted_ms=1),
    )
    ddb.delete_item(
        TableName=region.settings.table_name,
        Key={k: {"S": v} for k, v in resources.report_key(report_id).items()},
    )


def _object_versions(region: Region, key: str) -> list[Any]:
    listing = region.services.s3.list_object_versions(
        Bucket=region.settings.results_bucket, Prefix=key
    )
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def test_a_report_deleted_while_it_runs_is_not_written_back_and_its_result_is_removed(
    region: Region,
) -> None:
    # Given a report with a large (S3) result, deleted by the user while it is generated
    task = make_task(
        region.settings, "synthetic", {"output_rows": 4000, "output_bytes": 2_000_000, "seed": 3}
    )

    def delete_then_generate(generator: Any, request: Any) -> Any:
        _delete_as_the_edge_does(region, task.report_id)
        return run_in_process(generator, request)

    result = region.runner(execute=delete_then_generate).run(task)
    # Then the run wrote no terminal state, left no report item and removed its S3 object
    assert result.outcome is Outcome.NOOP
    assert region.get(task.report_id) is None
    assert region.services.store.is_deleted(task.report_id)
    assert _object_versions(region, resources.result_object_key(task.report_id)) == []
    # ... and a redelivered task does nothing either
    assert region.runner().run(task).outcome is Outcome.NOOP
    assert region.get(task.report_id) is None


def test_a_deleted_report_whose_item_came_back_is_removed_by_the_next_delivery(
    region: Region,
) -> None:
    # Given a finished report, then a tombstone (as if the deletion replicated in after a
    # later write from another region brought the item back)
    task = make_task(
        region.settings, "synthetic", {"output_rows": 4000, "output_bytes": 2_000_000, "seed": 4}
    )
    assert region.runner().run(task).outcome is Outcome.SUCCEEDED
    key = resources.result_object_key(task.report_id)
    assert _object_versions(region, key)
    region.services.store._ddb.put_item(
        TableName=region.settings.table_name,
        Item=intents.tombstone_item(task.report_id, TENANT, deleted_ms=1),
    )
    # When the task is delivered again
    assert region.runner().run(task).outcome is Outcome.NOOP
    # Then the item and the object are gone
    assert region.get(task.report_id) is None
    assert _object_versions(region, key) == []


def test_cancel_during_a_long_report(region: Region) -> None:
    services = Services(
        settings=region.settings.model_copy(update={"worker_lease_seconds": 3.0}),
        store=region.services.store,
        s3=region.services.s3,
        notifier=region.services.notifier,
    )
    # Heavy: the light kind takes at most 10 s of CPU (reportgrid/limits.py).
    task = make_task(region.settings, "synthetic_heavy", {"cpu_ms": 60_000, "output_rows": 5})
    outcome: list[Any] = []
    runner = threading.Thread(
        target=lambda: outcome.append(region.runner().__class__(services).run(task))
    )
    runner.start()
    region.wait_for(task.report_id, lambda r: r.state is State.RUNNING)
    started = time.monotonic()
    _request_cancel(region, task.report_id)
    runner.join(timeout=20)
    assert not runner.is_alive()
    assert outcome[0].outcome is Outcome.CANCELLED
    assert time.monotonic() - started < 10  # stopped mid-loop, not after 60 s of CPU
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.CANCELLED


def test_terminal_state_is_cached_and_published(region: Region) -> None:
    client = redis.Redis.from_url(region.redis_url)
    task = _light(region)
    pubsub = client.pubsub()
    pubsub.subscribe(resources.cache_events_channel(task.report_id))
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    assert region.runner().run(task).outcome is Outcome.SUCCEEDED
    states = []
    while (message := pubsub.get_message(timeout=1)) is not None:
        states.append(records.decode_record(message["data"]).state)
    assert states == [State.RUNNING, State.SUCCEEDED]
    cached = client.get(resources.cache_report_key(task.report_id))
    assert cached is not None
    assert records.decode_record(cached) == region.get(task.report_id)
    assert 0 < client.ttl(resources.cache_report_key(task.report_id)) <= 3600
    client.close()


def test_dead_redis_never_fails_a_report(region: Region) -> None:
    services = Services(
        settings=region.settings,
        store=region.services.store,
        s3=region.services.s3,
        notifier=Notifier("redis://127.0.0.1:1/0"),
    )
    task = _light(region)
    started = time.monotonic()
    assert region.runner().__class__(services).run(task).outcome is Outcome.SUCCEEDED
    assert time.monotonic() - started < 5


def test_expired_lease_is_taken_over_with_attempts_plus_one(region: Region) -> None:
    task = _light(region)
    store: ReportStore = region.services.store
    first = store.claim(task, owner="dead-worker", region="us-east-1", lease_seconds=0.2)
    assert first.record is not None
    assert first.record.attempts == 1
    busy = region.runner().run(task)
    assert busy.outcome is Outcome.BUSY  # the lease is still live
    time.sleep(0.3)
    assert region.runner().run(task).outcome is Outcome.SUCCEEDED
    record = region.get(task.report_id)
    assert record is not None
    assert record.attempts == 2
    assert record.region == "us-east-1"
    assert record.expires_at is not None
    assert record.ended_ms is not None
    assert record.expires_at == record.ended_ms // 1000 + 7 * 24 * 3600
