"""The Lambda handler, driven with events shaped like Lambda's, built from records read
back from the moto Kinesis stream."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from functions.runner import Runner, Services
from functions.stream_worker import handler as stream
from reportgrid import tasks
from reportgrid.local.bootstrap import client
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from tests.integration.workers.conftest import Region, make_task


@dataclass
class LambdaContext:
    function_name: str = "reportgrid-stream-worker"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:stream"
    aws_request_id: str = "req-1"
    log_group_name: str = "/aws/lambda/stream"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _deps(region: Region, *, s3: Any = None) -> stream.Dependencies:
    services = region.services
    if s3 is not None:
        services = Services(
            settings=services.settings, store=services.store, s3=s3, notifier=services.notifier
        )
    return stream.Dependencies(
        runner=Runner(services, owner_prefix="lambda-test"),
        sqs=region.sqs,
        heavy_queue_url=region.settings.heavy_queue_url,
    )


@pytest.fixture
def lambda_env(region: Region) -> Iterator[None]:
    stream.configure(_deps(region))
    yield
    stream.configure(None)


def _event(region: Region, payloads: list[bytes]) -> tuple[dict[str, Any], list[str]]:
    """Put records on the stream, read them back, and shape them as Lambda delivers them."""
    kinesis = region.kinesis
    name = region.settings.task_stream_name
    seqs = [
        kinesis.put_record(StreamName=name, Data=data, PartitionKey="p")["SequenceNumber"]
        for data in payloads
    ]
    arn = kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]
    shard = kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="p")["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=name,
        ShardId=shard,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=seqs[0],
    )["ShardIterator"]
    fetched = {
        r["SequenceNumber"]: r for r in kinesis.get_records(ShardIterator=iterator)["Records"]
    }
    records = []
    for seq in seqs:
        r = fetched[seq]
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/stream",
                "awsRegion": region.settings.region,
                "eventSourceARN": arn,
            }
        )
    return {"Records": records}, seqs


def _light(region: Region, seed: int, **extra: Any) -> TaskRecord:
    return make_task(region.settings, "synthetic", {"output_rows": 3, "seed": seed, **extra})


def test_poison_record_is_skipped_and_the_batch_succeeds(region: Region, lambda_env: None) -> None:
    good = [_light(region, seed) for seed in range(3)]
    invalid = make_task(region.settings, "summary", {"aggregates": []}, inline=b"a\n1\n")
    payloads = [
        tasks.encode(good[0]),
        b"\x00garbage",
        tasks.encode(good[1]),
        b"R\x01\xff\xff",
        tasks.encode(invalid),
        tasks.encode(good[2]),
    ]
    event, _ = _event(region, payloads)

    response = stream.handler(event, LambdaContext())

    # No record is retried: the poison ones are counted and skipped, the invalid one FAILED
    assert response == {"batchItemFailures": []}
    for task in good:
        record = region.get(task.report_id)
        assert record is not None
        assert record.state is State.SUCCEEDED
    record = region.get(invalid.report_id)
    assert record is not None
    assert record.state is State.FAILED
    assert record.error_reason == "INVALID_PARAMS"


def test_transient_failure_fails_only_its_record(region: Region, lambda_env: None) -> None:
    # Given an S3 endpoint that refuses connections: only the large result needs S3
    dead_s3 = client("s3", region.settings.region, "http://127.0.0.1:1")
    stream.configure(_deps(region, s3=dead_s3))
    small = _light(region, 1)
    large = _light(region, 2, output_rows=2000, output_bytes=2000 * 400)
    event, seqs = _event(region, [tasks.encode(small), tasks.encode(large)])

    response = stream.handler(event, LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": seqs[1]}]}
    assert (rec := region.get(small.report_id)) is not None
    assert rec.state is State.SUCCEEDED
    # The failed one released its lease, so Lambda's retry takes over at once
    stream.configure(_deps(region))
    retry, _ = _event(region, [tasks.encode(large)])
    assert stream.handler(retry, LambdaContext()) == {"batchItemFailures": []}
    record = region.get(large.report_id)
    assert record is not None
    assert record.state is State.SUCCEEDED
    assert record.attempts == 2


def test_heavy_tasks_are_forwarded_once(region: Region, lambda_env: None) -> None:
    heavy = [make_task(region.settings, "synthetic_heavy", {"seed": i}) for i in range(12)]
    light = _light(region, 5)
    event, _ = _event(region, [tasks.encode(t) for t in [*heavy, light]])

    assert stream.handler(event, LambdaContext()) == {"batchItemFailures": []}
    # A duplicate of the same tasks in new records is not forwarded again
    duplicate, _ = _event(region, [tasks.encode(t) for t in heavy[:3]])
    assert stream.handler(duplicate, LambdaContext()) == {"batchItemFailures": []}

    bodies = []
    while batch := region.sqs.receive_message(
        QueueUrl=region.settings.heavy_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", []):
        bodies += [m["Body"] for m in batch]
    forwarded = sorted(tasks.decode_text(b).report_id for b in bodies)
    assert forwarded == sorted(t.report_id for t in heavy)
    for task in heavy:
        record = region.get(task.report_id)
        assert record is not None
        assert record.state is State.PENDING
        assert record.forwarded
    assert (rec := region.get(light.report_id)) is not None
    assert rec.state is State.SUCCEEDED
