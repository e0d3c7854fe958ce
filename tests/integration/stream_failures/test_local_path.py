"""The local region exercises the AWS path: the local Kinesis runner sends what it gives up
on to the stream-failure queue in Lambda's on-failure destination shape, and the local SQS
event source feeds that queue to the drain with Lambda's SQS rules."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportgrid import resources, tasks
from reportgrid.local.kinesis_runner import ON_FAILURE_FILE, KinesisRunner, MappingConfig
from reportgrid.local.sqs_source import SqsEventSource
from tests.integration.stream_failures.helpers import (
    failure_body,
    failure_queue,
    heavy_bodies,
    put,
    receive_all,
)
from tests.integration.workers.conftest import Region, make_task

ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _always_fails(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("a function bug that fails every attempt")


@pytest.fixture
def runner(region: Region, tmp_path: Path) -> Iterator[Any]:
    started: list[tuple[KinesisRunner, list[threading.Thread]]] = []

    def start(handler: Any, **config: Any) -> KinesisRunner:
        runner = KinesisRunner(
            handler,
            stream_name=region.settings.task_stream_name,
            region=region.aws.region,
            endpoint_url=region.aws.endpoint_url,
            state_dir=tmp_path / "runner",
            failure_queue_url=failure_queue(region),
            config=MappingConfig(**{"poll_interval_seconds": 0.02, **config}),
        )
        started.append((runner, runner.start()))
        return runner

    yield start
    for each, threads in started:
        each.stop()
        for thread in threads:
            thread.join(10)


def _wait_for_failures(region: Region, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} on-failure records"
        got += [json.loads(m["Body"]) for m in receive_all(region, failure_queue(region))]
        time.sleep(0.05)
    return got


def test_a_given_up_batch_reaches_the_failure_queue_in_lambdas_shape(
    region: Region, runner: Any, tmp_path: Path
) -> None:
    # Given three records on one shard and a handler that fails every attempt
    puts = put(region, [b"a", b"b", b"c"])
    # When the runner gives up on them (no bisection: the batch goes whole, as in Lambda)
    started = runner(
        _always_fails, batch_size=10, max_retry_attempts=1, bisect_batch_on_function_error=False
    )
    (record,) = _wait_for_failures(region, 1)

    # Then the queue holds Lambda's on-failure destination record, field for field
    assert set(record) == {
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
    }
    assert set(record["requestContext"]) == {
        "requestId",
        "functionArn",
        "condition",
        "approximateInvokeCount",
    }
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["functionArn"] == started.function_arn
    assert record["requestContext"]["approximateInvokeCount"] == 2  # the attempt + 1 retry
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["version"] == "1.0"
    assert ISO_MILLIS.match(record["timestamp"])
    info = record["KinesisBatchInfo"]
    assert set(info) == {
        "shardId",
        "startSequenceNumber",
        "endSequenceNumber",
        "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord",
        "batchSize",
        "streamArn",
    }
    assert info["shardId"] == puts[0].shard_id
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (
        puts[0].sequence_number,
        puts[-1].sequence_number,
    )
    assert info["batchSize"] == 3
    assert info["streamArn"] == started.stream_arn
    assert info["streamArn"].endswith(":stream/" + resources.TASK_STREAM_NAME)
    assert ISO_MILLIS.match(info["approximateArrivalOfFirstRecord"])
    # And the on-failure log keeps the same document
    (line,) = (tmp_path / "runner" / ON_FAILURE_FILE).read_text().splitlines()
    assert json.loads(line) == record


def test_records_too_old_to_deliver_are_sent_without_a_response_context(
    region: Region, runner: Any
) -> None:
    put(region, [b"old"])
    time.sleep(1.1)
    runner(_always_fails, max_record_age_seconds=1.0)
    (record,) = _wait_for_failures(region, 1)
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in record  # never invoked


def test_the_local_sqs_event_source_deletes_handled_messages_and_retries_the_rest(
    region: Region, drain_handler: Any
) -> None:
    # Given on the failure queue a good on-failure record and a malformed one
    task = make_task(region.settings, "synthetic", {})
    good = failure_body(region, put(region, [tasks.encode(task)]))
    url = failure_queue(region)
    region.sqs.send_message(QueueUrl=url, MessageBody=good)
    region.sqs.send_message(QueueUrl=url, MessageBody="not json")
    source = SqsEventSource(
        drain_handler.handler,
        sqs=region.sqs,
        queue_url=url,
        region=region.aws.region,
        wait_seconds=0,
        visibility_timeout=0,
    )

    # When it polls until the queue is empty
    handled = 0
    for _ in range(20):
        got = source.poll_once()
        handled += got
        if not got:
            break

    # Then the good one was re-driven once and deleted; the malformed one was retried until
    # the queue's maxReceiveCount moved it to the DLQ, as in AWS
    assert [tasks.decode_text(b).report_id for b in heavy_bodies(region)] == [task.report_id]
    assert receive_all(region, url) == []
    dead = receive_all(region, region.aws.stream_failure_dlq_url)
    assert [m["Body"] for m in dead] == ["not json"]
    assert handled == 1 + resources.STREAM_FAILURE_MAX_RECEIVES
