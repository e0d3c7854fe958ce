"""Helpers for the stream-failure drain against the real moto server: the real handler with
its clients injected, fed SQS events built from real messages of the real failure queue."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.awsrequest import AWSResponse

from functions.queue_worker.worker import QueueWorker
from functions.runner import Runner
from functions.stream_failures import handler as drain
from reportgrid import resources
from reportgrid.local.bootstrap import LOCAL_ACCOUNT
from reportgrid.local.kinesis_runner import LambdaContext, StreamRecord, on_failure_record
from reportgrid.local.sqs_source import lambda_sqs_record
from tests.integration.workers.conftest import Region

STREAM_WORKER_ARN = f"arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT}:function:reportgrid-stream-worker"


@dataclass(frozen=True)
class Put:
    """A record as put on the stream."""

    shard_id: str
    sequence_number: str
    data: bytes


def put(region: Region, payloads: Sequence[bytes], key: str = "one-shard") -> list[Put]:
    """Put records on one shard (same partition key), in order."""
    puts = []
    for data in payloads:
        reply = region.kinesis.put_record(
            StreamName=region.settings.task_stream_name, Data=data, PartitionKey=key
        )
        puts.append(Put(reply["ShardId"], reply["SequenceNumber"], data))
    return puts


def stream_arn(region: Region) -> str:
    summary = region.kinesis.describe_stream_summary(StreamName=region.settings.task_stream_name)
    return str(summary["StreamDescriptionSummary"]["StreamARN"])


def failure_body(
    region: Region, puts: Sequence[Put], condition: str = "RetryAttemptsExhausted"
) -> str:
    """The on-failure destination record Lambda would send for these records (built by the
    same function the local Kinesis runner uses)."""
    now = datetime.now(UTC)
    records = [StreamRecord(p.shard_id, p.sequence_number, "k", p.data, now) for p in puts]
    return json.dumps(
        on_failure_record(
            records,
            condition=condition,
            function_arn=STREAM_WORKER_ARN,
            stream_arn=stream_arn(region),
            invoke_count=4,
            function_error=True,
        )
    )


def failure_queue(region: Region) -> str:
    url = region.aws.stream_failure_queue_url
    assert url, "create_region made no stream-failure queue"
    return url


def receive_all(region: Region, url: str, visibility: int = 30) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        batch = region.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return got
        got += batch


def deliver(region: Region, bodies: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Send the bodies to the failure queue, receive them, and invoke the real handler with
    the SQS event Lambda would build; returns its response and the message ids in order."""
    url = failure_queue(region)
    for body in bodies:
        region.sqs.send_message(QueueUrl=url, MessageBody=body)
    messages = receive_all(region, url)
    assert len(messages) == len(bodies)
    by_body = {m["Body"]: m for m in messages}
    ordered = [by_body[b] for b in bodies]
    arn = region.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    event = {
        "Records": [lambda_sqs_record(m, queue_arn=arn, region=region.aws.region) for m in ordered]
    }
    response = drain.handler(event, lambda_context())
    for message in ordered:  # as Lambda would after any response: gone or back later
        region.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return response, [m["MessageId"] for m in ordered]


def lambda_context() -> LambdaContext:
    return LambdaContext(
        function_name="reportgrid-stream-failures",
        invoked_function_arn=f"arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT}:function:x",
        memory_limit_in_mb=512,
        timeout_seconds=resources.STREAM_FAILURE_TIMEOUT_SECONDS,
    )


def heavy_bodies(region: Region) -> list[str]:
    url = region.settings.heavy_queue_url
    assert url is not None
    return [m["Body"] for m in receive_all(region, url)]


@contextmanager
def configured_drain(region: Region) -> Iterator[Any]:
    """The real drain handler with clients on the moto server."""
    url = region.settings.heavy_queue_url
    assert url is not None
    drain.configure(
        drain.Dependencies(
            kinesis=region.kinesis, sqs=region.sqs, store=region.services.store, heavy_queue_url=url
        )
    )
    try:
        yield drain
    finally:
        drain.configure(None)


@contextmanager
def queue_worker(region: Region) -> Iterator[QueueWorker]:
    """A real queue worker on the heavy queue, in a thread."""
    url = region.settings.heavy_queue_url
    assert url is not None
    worker = QueueWorker(
        Runner(region.services, owner_prefix="fargate-test"),
        sqs=region.sqs,
        queue_url=url,
        concurrency=2,
        lease_seconds=5,
        wait_seconds=1,
    )
    loop = threading.Thread(target=worker.run, kwargs={"stop_grace_seconds": 10}, daemon=True)
    loop.start()
    try:
        yield worker
    finally:
        worker.stop()
        loop.join(15)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:  # botocore reads this
        yield self._data


class FailSends:
    """Every SendMessageBatch on `sqs` answers 500 (after the client's own retries, the
    caller sees a ClientError), while `active`."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.injected = 0

    def __enter__(self) -> FailSends:
        self._sqs.meta.events.register("before-send.sqs.SendMessageBatch", self._hook)
        return self

    def __exit__(self, *_: object) -> None:
        self._sqs.meta.events.unregister("before-send.sqs.SendMessageBatch", self._hook)

    def _hook(self, request: Any, **_: Any) -> AWSResponse:
        self.injected += 1
        body = json.dumps({"__type": "InternalError", "message": "injected"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "fault"}
        return AWSResponse(request.url, 500, headers, _Body(body))  # type: ignore[arg-type]


def emitted(output: str, metric: str) -> float:
    """The sum of `metric` over the CloudWatch EMF lines Powertools printed."""
    total = 0.0
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        value = json.loads(line).get(metric)
        if value is not None:
            total += sum(value) if isinstance(value, list) else value
    return total
