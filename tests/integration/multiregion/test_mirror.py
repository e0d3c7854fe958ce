"""The mirror consumer forwards the home stream's tasks to the peer's standby queue,
delayed by the grace, and skips what the edge mirrored itself."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from functions.mirror import handler as mirror
from reportgrid import tasks
from reportgrid.local.kinesis_runner import LambdaContext
from reportgrid.mirroring import delay_for
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.multiregion.conftest import Pair, make_task


def _event(*payloads: bytes) -> dict[str, object]:
    return {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": "k",
                    "sequenceNumber": str(1000 + i),
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": datetime.now(UTC).timestamp(),
                    "kinesisSchemaVersion": "1.0",
                },
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{1000 + i}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/reportgrid-tasks",
                "awsRegion": "us-east-1",
            }
            for i, data in enumerate(payloads)
        ]
    }


def _context() -> LambdaContext:
    return LambdaContext("reportgrid-mirror", "arn:aws:lambda:us-east-1:1:function:m", 128, 60)


def test_tasks_reach_the_peer_standby_queue_marked_and_delayed(pair: Pair) -> None:
    home, peer = pair.home, pair.peer
    mirror.configure(
        mirror.Dependencies(
            sqs=peer.sqs, peer_queue_url=peer.aws.standby_queue_url, grace_seconds=1
        )
    )
    try:
        regional = make_task(home.settings, seed=1)
        edge_mirrored = make_task(home.settings, seed=2)
        edge_mirrored.request.durability = pb.DURABILITY_MULTI_REGION
        response = mirror.handler(
            _event(tasks.encode(regional), tasks.encode(edge_mirrored), b"junk"), _context()
        )
    finally:
        mirror.configure(None)
    assert response == {"batchItemFailures": []}
    # Nothing is visible during the grace ...
    first = peer.sqs.receive_message(QueueUrl=peer.aws.standby_queue_url, WaitTimeSeconds=0)
    assert "Messages" not in first
    # ... then exactly the regional task, as a mirrored copy
    received = peer.sqs.receive_message(
        QueueUrl=peer.aws.standby_queue_url, WaitTimeSeconds=3, MaxNumberOfMessages=10
    )["Messages"]
    copies = [tasks.decode_text(m["Body"]) for m in received]
    assert [c.report_id for c in copies] == [regional.report_id]
    assert copies[0].mirrored


def test_a_late_mirror_does_not_wait_a_whole_grace_again() -> None:
    task = make_task_at(accepted_ms=10_000)
    assert delay_for(task, grace_seconds=30, now_ms=10_000) == 30
    assert delay_for(task, grace_seconds=30, now_ms=35_000) == 5
    assert delay_for(task, grace_seconds=30, now_ms=99_000) == 0


def make_task_at(*, accepted_ms: int) -> tasks.TaskRecord:
    task = tasks.TaskRecord(report_id="r", tenant="t", home_region="us-east-1")
    task.accept_time.FromMilliseconds(accepted_ms)
    return task
