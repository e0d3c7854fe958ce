"""Sending task copies to the peer region's standby queue: SendMessageBatch in chunks of at
most ten entries and SQS's batch payload limit, each copy marked `mirrored` and delayed so
that it becomes visible a grace period after its home region accepted it.

Shared by the mirror consumer (functions/mirror, sync boto3: `send_mirrored`) and the edge's
peer sender (grpc_edge/peer.py, aioboto3: the copy, its delay and the batch limits)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import resources, tasks
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

SQS_BATCH_ENTRIES: Final = 10
# SendMessageBatch's limit on the sum of the bodies (SQS's message size limit).
SQS_BATCH_BYTES: Final = 256 * 1024


def mirrored_copy(task: TaskRecord) -> TaskRecord:
    copy = TaskRecord()
    copy.CopyFrom(task)
    copy.mirrored = True
    return copy


def delay_for(task: TaskRecord, *, grace_seconds: int, now_ms: int) -> int:
    """Seconds until accept time + grace (so a late mirror does not wait a full grace
    again), within SQS's 0..900."""
    if not task.HasField("accept_time"):
        return min(grace_seconds, resources.MAX_SQS_DELAY_SECONDS)
    due_ms = task.accept_time.ToMilliseconds() + grace_seconds * 1000
    left = -(-(due_ms - now_ms) // 1000)  # ceiling
    return max(0, min(int(left), resources.MAX_SQS_DELAY_SECONDS))


def chunks(bodies: Sequence[str]) -> list[list[int]]:
    """Indexes of `bodies` grouped into batches SQS accepts."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, body in enumerate(bodies):
        length = len(body.encode())
        if current and (len(current) == SQS_BATCH_ENTRIES or size + length > SQS_BATCH_BYTES):
            groups.append(current)
            current, size = [], 0
        current.append(index)
        size += length
    if current:
        groups.append(current)
    return groups


def send_mirrored(
    items: Sequence[tuple[str, TaskRecord]],
    *,
    sqs: SQSClient,
    queue_url: str,
    grace_seconds: int,
    now_ms: int,
) -> set[str]:
    """Send (token, task) pairs as mirrored copies; return the tokens whose send failed
    (the caller retries them)."""
    bodies = [tasks.encode_text(mirrored_copy(task)) for _, task in items]
    failed: set[str] = set()
    for group in chunks(bodies):
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(position),
                "MessageBody": bodies[index],
                "DelaySeconds": delay_for(
                    items[index][1], grace_seconds=grace_seconds, now_ms=now_ms
                ),
            }
            for position, index in enumerate(group)
        ]
        try:
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError):
            log.warning(
                "SendMessageBatch to the peer failed for %d tasks", len(group), exc_info=True
            )
            failed.update(items[index][0] for index in group)
            continue
        for entry in response.get("Failed", []):
            failed.add(items[group[int(entry["Id"])]][0])
    return failed
