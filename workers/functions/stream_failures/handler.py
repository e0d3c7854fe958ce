"""Lambda handler for the stream-failure queue (the Kinesis event source's on-failure
destination, resources.STREAM_FAILURE_QUEUE_NAME).

Each SQS message is one on-failure destination record and succeeds or fails alone
(Powertools BatchProcessor, failures reported by message id):
- its batch is read back from the task stream and every task whose report is not terminal
  is sent to the heavy queue (functions/stream_failures/redrive.py); undecodable records
  are counted and skipped;
- records no longer in the stream are logged and counted (StreamRecordsExpired): the
  message succeeds, since no retry can bring them back;
- transient trouble (throttling, timeouts, a partly failed send) fails the message, so it
  is delivered again; a malformed message fails every time and ends in the queue's DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.batch import Wired, sqs_batch_handler
from functions.clients import client
from functions.store import ReportStore, store_for
from functions.stream_failures.redrive import parse_failure_record, redrive
from reportgrid import resources
from reportgrid.errors import SettingsError
from reportgrid.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient
    from mypy_boto3_sqs.client import SQSClient

logger = Logger(service=resources.SERVICE_STREAM_FAILURES)
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service=resources.SERVICE_STREAM_FAILURES)
tracer = Tracer(service=resources.SERVICE_STREAM_FAILURES)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@dataclass
class Dependencies:
    kinesis: KinesisClient
    sqs: SQSClient
    store: ReportStore
    heavy_queue_url: str


def _build() -> Dependencies:
    """Built on first use, once per container; the settings are validated here."""
    settings = get_settings()
    if not settings.heavy_queue_url:
        raise SettingsError(f"the stream-failure drain needs {resources.ENV.HEAVY_QUEUE_URL}")
    return Dependencies(
        kinesis=client("kinesis", settings),
        sqs=client("sqs", settings),
        store=store_for(settings, client("dynamodb", settings)),
        heavy_queue_url=settings.heavy_queue_url,
    )


dependencies = Wired(_build)
configure = dependencies.configure


def record_handler(record: SQSRecord) -> str:
    deps = dependencies()
    info = parse_failure_record(record.body)
    batch = {
        "shard_id": info.shard_id,
        "start_sequence_number": info.start_sequence_number,
        "end_sequence_number": info.end_sequence_number,
        "batch_size": info.batch_size,
        "condition": info.condition,
    }
    outcome = redrive(
        info,
        kinesis=deps.kinesis,
        store=deps.store,
        sqs=deps.sqs,
        queue_url=deps.heavy_queue_url,
    )
    if outcome.expired:
        # Lost reports: their tasks left the stream before anyone could re-drive them.
        logger.error(
            "records of a given-up batch are no longer in the stream",
            extra={**batch, "expired": outcome.expired, "found": outcome.read},
        )
        metrics.add_metric(
            resources.METRIC.STREAM_RECORDS_EXPIRED, MetricUnit.Count, outcome.expired
        )
    if outcome.undecodable:
        metrics.add_metric(resources.METRIC.POISON_RECORDS, MetricUnit.Count, outcome.undecodable)
    metrics.add_metric(resources.METRIC.TASKS_REDRIVEN, MetricUnit.Count, len(outcome.redriven))
    logger.info(
        "re-drove a given-up batch",
        extra={
            **batch,
            "redriven": outcome.redriven,
            "already_terminal": outcome.terminal,
            "undecodable": outcome.undecodable,
        },
    )
    return f"redriven {len(outcome.redriven)}"


handler = sqs_batch_handler(
    record_handler=record_handler,
    processor=processor,
    dependencies=dependencies,
    logger=logger,
    metrics=metrics,
    tracer=tracer,
)
