"""Lambda handler of the mirror consumer: a second consumer of the regional Kinesis task
stream that forwards each task to the peer region's standby queue (the role Kafka's
MirrorMaker plays there), delayed by the grace period (settings.mirror_grace_seconds).

Tasks submitted with DURABILITY_MULTI_REGION are skipped: the edge sent their copy to the
peer itself before acknowledging them. Each record succeeds or fails alone (Powertools
BatchProcessor): a failed send fails its record, so Lambda delivers it again; an
undecodable record is counted and skipped (the stream worker fails it too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.batch import Wired, partial_response
from functions.clients import client
from reportgrid import tasks
from reportgrid.errors import SettingsError
from reportgrid.mirroring import send_mirrored
from reportgrid.settings import get_settings
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

SERVICE = "reportgrid-mirror"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="Reportgrid", service=SERVICE)
processor = BatchProcessor(
    event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False
)


class RetryRecord(Exception):
    """Fails one record so that Lambda delivers it again."""


@dataclass
class Dependencies:
    sqs: SQSClient
    peer_queue_url: str
    grace_seconds: int


def _build() -> Dependencies:
    settings = get_settings()
    if not settings.peer_standby_queue_url or not settings.peer_region:
        raise SettingsError(
            "the mirror consumer needs REPORTGRID_PEER_REGION and REPORTGRID_PEER_STANDBY_QUEUE_URL"
        )
    peer = settings.model_copy(update={"region": settings.peer_region})
    return Dependencies(
        sqs=client("sqs", peer),
        peer_queue_url=settings.peer_standby_queue_url,
        grace_seconds=settings.mirror_grace_seconds,
    )


dependencies = Wired(_build)
configure = dependencies.configure


def needs_mirror(task: TaskRecord) -> bool:
    """False for copies the edge already sent (multi-region durability) and for copies
    that are themselves mirrors."""
    return not task.mirrored and task.request.durability != pb.DURABILITY_MULTI_REGION


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = dependencies()
    to_send: list[tuple[str, TaskRecord]] = []
    skipped = 0
    for raw in event.get("Records", []):
        record = KinesisStreamRecord(raw)
        try:
            task = tasks.decode(record.kinesis.data_as_bytes())
        except tasks.UndecodableTask:
            continue  # nothing to mirror; the stream worker counts it as poison
        if needs_mirror(task):
            to_send.append((record.kinesis.sequence_number, task))
        else:
            skipped += 1
    failed = send_mirrored(
        to_send,
        sqs=deps.sqs,
        queue_url=deps.peer_queue_url,
        grace_seconds=deps.grace_seconds,
        now_ms=time.time_ns() // 1_000_000,
    )
    metrics.add_metric("TasksMirrored", MetricUnit.Count, len(to_send) - len(failed))
    metrics.add_metric("TasksMirroredByEdge", MetricUnit.Count, skipped)

    def record_handler(record: KinesisStreamRecord) -> str:
        if record.kinesis.sequence_number in failed:
            raise RetryRecord(f"mirroring record {record.kinesis.sequence_number} failed")
        return "mirrored"

    return partial_response(event, record_handler, processor, context)
