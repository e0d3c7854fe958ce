"""The local Kinesis event source reads the real (moto server) stream and invokes a handler
with Lambda's event shape and Lambda's retry rules. The handler here is a test function:
the runner is the code directly under test."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reportgrid import resources as r
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.local.kinesis_runner import (
    ON_FAILURE_FILE,
    KinesisRunner,
    MappingConfig,
    failed_identifiers,
)

FAST = {"poll_interval_seconds": 0.02}


class Recorder:
    """A handler that records every event and answers with a policy."""

    def __init__(self, policy: Callable[[list[dict[str, Any]]], Any] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.done: list[bytes] = []  # payloads of records the handler accepted
        self.policy = policy
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self.lock:
            self.events.append(event)
            self.contexts.append(context)
        records = event["Records"]
        answer = self.policy(records) if self.policy else None
        failed = {f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])}
        cut = min(
            (i for i, rec in enumerate(records) if rec["kinesis"]["sequenceNumber"] in failed),
            default=len(records),
        )
        with self.lock:
            self.done.extend(base64.b64decode(rec["kinesis"]["data"]) for rec in records[:cut])
        return answer


def _put(aws: RegionResources, payloads: list[bytes], key: str = "p") -> list[str]:
    kinesis = client("kinesis", aws.region, aws.endpoint_url)
    return [
        kinesis.put_record(StreamName=r.TASK_STREAM_NAME, Data=p, PartitionKey=key)[
            "SequenceNumber"
        ]
        for p in payloads
    ]


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def running(aws: RegionResources, tmp_path: Path) -> Iterator[Callable[..., KinesisRunner]]:
    started: list[tuple[KinesisRunner, list[threading.Thread]]] = []

    def start(handler: Any, **config: Any) -> KinesisRunner:
        runner = KinesisRunner(
            handler,
            stream_name=r.TASK_STREAM_NAME,
            region=aws.region,
            endpoint_url=aws.endpoint_url,
            state_dir=tmp_path / "state",
            config=MappingConfig(**{**FAST, **config}),
        )
        started.append((runner, runner.start()))
        return runner

    yield start
    for runner, threads in started:
        runner.stop()
        for thread in threads:
            thread.join(5)


def test_events_and_context_are_shaped_as_lambdas(aws: RegionResources, running: Any) -> None:
    # Given records on one shard
    seqs = _put(aws, [b"one", b"two"], key="k1")
    handler = Recorder()
    # When the runner delivers them
    runner = running(handler)
    _until(lambda: len(handler.done) == 2)
    # Then the event has Lambda's Kinesis shape, field for field
    record = handler.events[0]["Records"][0]
    stream_arn = client("kinesis", aws.region, aws.endpoint_url).describe_stream_summary(
        StreamName=r.TASK_STREAM_NAME
    )["StreamDescriptionSummary"]["StreamARN"]
    assert set(record) == {
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    }
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventName"] == "aws:kinesis:record"
    assert record["eventVersion"] == "1.0"
    assert record["awsRegion"] == aws.region
    assert record["eventSourceARN"] == stream_arn
    assert record["invokeIdentityArn"].startswith("arn:aws:iam::")
    assert record["eventID"].startswith("shardId-")
    assert record["eventID"].endswith(":" + seqs[0])
    kinesis = record["kinesis"]
    assert kinesis["kinesisSchemaVersion"] == "1.0"
    assert kinesis["partitionKey"] == "k1"
    assert kinesis["sequenceNumber"] == seqs[0]
    assert base64.b64decode(kinesis["data"]) == b"one"
    assert abs(kinesis["approximateArrivalTimestamp"] - time.time()) < 60
    json.dumps(handler.events[0])  # Lambda events are plain JSON
    # And the context carries what Powertools reads
    ctx = handler.contexts[0]
    assert ctx.function_name == runner.function_name
    assert ctx.invoked_function_arn.endswith(":function:" + runner.function_name)
    assert ctx.memory_limit_in_mb > 0
    assert len(ctx.aws_request_id) == 36
    assert 0 < ctx.get_remaining_time_in_millis() <= r.LAMBDA_TIMEOUT_SECONDS * 1000


def test_batch_size_bounds_each_invocation(aws: RegionResources, running: Any) -> None:
    _put(aws, [str(i).encode() for i in range(7)])
    handler = Recorder()
    running(handler, batch_size=3, batching_window_seconds=0.5)
    _until(lambda: len(handler.done) == 7)
    sizes = [len(e["Records"]) for e in handler.events]
    assert max(sizes) <= 3
    assert handler.done == [str(i).encode() for i in range(7)]  # in order, each once


def test_partial_batch_response_retries_from_the_lowest_failed_record(
    aws: RegionResources, running: Any
) -> None:
    # Given four records, and a handler that fails the third (and fourth) once
    _put(aws, [b"a", b"b", b"c", b"d"])
    failed_once: set[bytes] = set()

    def policy(records: list[dict[str, Any]]) -> dict[str, Any]:
        failures = []
        for rec in records:
            data = base64.b64decode(rec["kinesis"]["data"])
            if data in (b"c", b"d") and data not in failed_once:
                failed_once.add(data)
                failures.append({"itemIdentifier": rec["kinesis"]["sequenceNumber"]})
        return {"batchItemFailures": failures}

    handler = Recorder(policy)
    running(handler, batch_size=4, batching_window_seconds=1.0)
    _until(lambda: handler.done[-1:] == [b"d"])
    # Then a and b were delivered once; the retry started at c
    assert handler.done == [b"a", b"b", b"c", b"d"]
    first, second = handler.events[0]["Records"], handler.events[1]["Records"]
    assert [base64.b64decode(x["kinesis"]["data"]) for x in first] == [b"a", b"b", b"c", b"d"]
    assert base64.b64decode(second[0]["kinesis"]["data"]) == b"c"


def test_bisect_isolates_a_poison_record_which_goes_to_the_failure_log(
    aws: RegionResources, running: Any, tmp_path: Path
) -> None:
    # Given a poison record among good ones, and a handler that raises on any batch with it
    _put(aws, [b"g1", b"g2", b"POISON", b"g3", b"g4"])

    def policy(records: list[dict[str, Any]]) -> None:
        if any(base64.b64decode(x["kinesis"]["data"]) == b"POISON" for x in records):
            raise RuntimeError("poison")

    handler = Recorder(policy)
    running(handler, batch_size=5, batching_window_seconds=1.0, max_retry_attempts=2)
    _until(lambda: b"g4" in handler.done)
    # Then every good record was processed exactly once, in order
    assert handler.done == [b"g1", b"g2", b"g3", b"g4"]
    # And the poison record alone is in the on-failure log, with Lambda's batch info
    (line,) = (tmp_path / "state" / ON_FAILURE_FILE).read_text().splitlines()
    entry = json.loads(line)
    assert entry["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert entry["KinesisBatchInfo"]["batchSize"] == 1
    poison_tries = sum(
        1
        for e in handler.events
        if len(e["Records"]) == 1
        and base64.b64decode(e["Records"][0]["kinesis"]["data"]) == b"POISON"
    )
    assert poison_tries == 3  # the first attempt and two retries


def test_records_older_than_the_maximum_age_are_skipped(
    aws: RegionResources, running: Any, tmp_path: Path
) -> None:
    _put(aws, [b"old"])
    time.sleep(1.1)
    handler = Recorder()
    running(handler, max_record_age_seconds=1.0)
    log = tmp_path / "state" / ON_FAILURE_FILE
    _until(log.exists)
    assert json.loads(log.read_text())["requestContext"]["condition"] == "RecordAgeExceeded"
    assert handler.done == []


def test_a_restarted_runner_resumes_after_its_checkpoint(
    aws: RegionResources, running: Any
) -> None:
    _put(aws, [b"first"])
    before = Recorder()
    runner = running(before)
    _until(lambda: before.done == [b"first"])
    runner.stop()
    time.sleep(0.2)
    _put(aws, [b"second"])
    after = Recorder()
    running(after)
    _until(lambda: after.done == [b"second"])
    time.sleep(0.3)
    assert after.done == [b"second"]  # "first" is not delivered again


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, []),
        ({}, []),
        ({"batchItemFailures": []}, []),
        ({"batchItemFailures": [{"itemIdentifier": "5"}]}, ["5"]),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"nope": 1}]}, None),
        ({"batchItemFailures": "x"}, None),
    ],
)
def test_failed_identifiers_follows_lambdas_rules(response: Any, expected: Any) -> None:
    assert failed_identifiers(response) == expected
