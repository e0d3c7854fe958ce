"""Tasks put off because their tenant had its max_running reports running
(functions/tenant_slots.py) wait in the heavy queue, sent with a delay; the queue worker
(which runs light kinds as well as heavy ones) takes them when the delay has passed and
checks their tenant's slots again.

A put-off task is always a *new* message (SendMessage with DelaySeconds), never the same
message made invisible again: every receive of a message that is not deleted counts
towards the queue's maxReceiveCount ("the number of times a message can be unsuccessfully
dequeued before being moved to the dead-letter queue", CDK aws_sqs.DeadLetterQueue), so a
report put off five times by ChangeMessageVisibility would end in the DLQ and FAILED.
The new message starts at no receives; the old message (or stream record) is let go only
after the send succeeded, so a task is never lost, and a send whose reply was lost at
worst leaves two messages: the second finds the report done or held (conditional claims),
and runs nothing twice.

Each message carries how often its task was put off (DEFERRALS_ATTRIBUTE), for the
backoff: min(DEFER_MAX_SECONDS, DEFER_BASE_SECONDS x 2^n), less up to half of it at
random (jitter, so the put-off tasks of one burst do not all come back at once), and when
it was first put off, for the slot-wait metric.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import limits, resources, tasks
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

SQS_BATCH: Final = 10
DEFERRALS_ATTRIBUTE: Final = "reportgrid-deferrals"
FIRST_DEFERRED_ATTRIBUTE: Final = "reportgrid-first-deferred-ms"


@dataclass(frozen=True, slots=True)
class Deferred:
    """A task to put off, how often it was before, and when it first was (epoch ms)."""

    key: str  # the caller's handle: a stream record's sequence number, a message id
    task: TaskRecord
    deferrals: int = 0
    first_deferred_ms: int = 0


def delay_seconds(deferrals: int, *, rng: random.Random | None = None) -> int:
    """The delay of a task put off `deferrals` times before (whole seconds, 1..SQS's 900)."""
    ceiling = min(limits.DEFER_MAX_SECONDS, limits.DEFER_BASE_SECONDS * 2 ** min(deferrals, 20))
    delay = ceiling * (1 - 0.5 * (rng or random).random())
    return int(max(1, min(resources.MAX_SQS_DELAY_SECONDS, round(delay))))


def attributes_of(message: Mapping[str, Any]) -> tuple[int, int]:
    """(deferrals, first deferred ms) of a received message (0, 0 if never put off)."""
    found = message.get("MessageAttributes") or message.get("messageAttributes") or {}

    def number(name: str) -> int:
        value = found.get(name) or {}
        text = value.get("StringValue") or value.get("stringValue") or "0"
        try:
            return int(text)
        except ValueError:
            return 0

    return number(DEFERRALS_ATTRIBUTE), number(FIRST_DEFERRED_ATTRIBUTE)


def defer(items: Iterable[Deferred], *, sqs: SQSClient, queue_url: str, now_ms: int) -> set[str]:
    """Send each task to the queue with its delay; return the keys whose send failed (the
    caller keeps those: the stream record is retried, the message stays)."""
    todo = list(items)
    failed: set[str] = set()
    for start in range(0, len(todo), SQS_BATCH):
        chunk = todo[start : start + SQS_BATCH]
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(i),
                "MessageBody": tasks.encode_text(item.task),
                "DelaySeconds": delay_seconds(item.deferrals),
                "MessageAttributes": {
                    DEFERRALS_ATTRIBUTE: {
                        "DataType": "Number",
                        "StringValue": str(item.deferrals + 1),
                    },
                    FIRST_DEFERRED_ATTRIBUTE: {
                        "DataType": "Number",
                        "StringValue": str(item.first_deferred_ms or now_ms),
                    },
                },
            }
            for i, item in enumerate(chunk)
        ]
        try:
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError):
            log.warning("SendMessageBatch failed for %d put-off tasks", len(chunk), exc_info=True)
            failed.update(item.key for item in chunk)
            continue
        for entry in response.get("Failed", []):
            failed.add(chunk[int(entry["Id"])].key)
    return failed


def count_deferred(tenant_classes: Iterable[str], *, service: str) -> None:
    """TasksDeferred, one EMF line per tenant class ("quota": the tenant's own max_running;
    "default"), with the service dimension and the class as its second."""
    counts: dict[str, int] = {}
    for tenant_class in tenant_classes:
        counts[tenant_class] = counts.get(tenant_class, 0) + 1
    for tenant_class, count in counts.items():
        try:
            with single_metric(
                name=resources.METRIC.TASKS_DEFERRED,
                unit=MetricUnit.Count,
                value=count,
                namespace=resources.METRICS_NAMESPACE,
                default_dimensions={resources.METRIC_SERVICE_DIMENSION: service},
            ) as metric:
                metric.add_dimension(resources.METRIC_TENANT_CLASS_DIMENSION, tenant_class)
        except Exception:  # a metric must never fail a task
            log.warning("could not emit %s", resources.METRIC.TASKS_DEFERRED, exc_info=True)
