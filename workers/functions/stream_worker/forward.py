"""Heavy tasks leave the stream for the queue workers: each is marked PENDING+forwarded
(a conditional write, so a duplicate task in another record is not forwarded into a second
live run) and sent to SQS in batches of ten."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from functions.store import ReportStore
from reportgrid import tasks
from reportgrid.errors import Unavailable
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

SQS_BATCH: Final = 10


def forward(
    heavy: Iterable[tuple[str, TaskRecord]], *, store: ReportStore, sqs: SQSClient, queue_url: str
) -> set[str]:
    """Forward (sequence number, task) pairs; return the sequence numbers that failed
    transiently (their records must be retried)."""
    failed: set[str] = set()
    to_send: list[tuple[str, TaskRecord]] = []
    for seq, task in heavy:
        try:
            # The token is the stream record: a redelivery of the same record may send
            # again (its earlier send may have failed), a duplicate record may not.
            if store.mark_forwarded(task, token=f"kinesis:{seq}"):
                to_send.append((seq, task))
        except Unavailable:
            log.warning("could not mark %s forwarded", task.report_id, exc_info=True)
            failed.add(seq)
    for start in range(0, len(to_send), SQS_BATCH):
        chunk = to_send[start : start + SQS_BATCH]
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "MessageBody": tasks.encode_text(task)}
            for i, (_, task) in enumerate(chunk)
        ]
        try:
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError):
            log.warning("SendMessageBatch failed for %d tasks", len(chunk), exc_info=True)
            failed.update(seq for seq, _ in chunk)
            continue
        for entry in response.get("Failed", []):
            failed.add(chunk[int(entry["Id"])][0])
    return failed
