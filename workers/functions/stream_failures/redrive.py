"""Re-drive the tasks of a Kinesis batch that Lambda gave up on.

Lambda's on-failure destination receives only the batch's metadata (shard, first and last
sequence number, size). So the records are read back from the stream, decoded, and each
task whose report is not terminal is sent to the heavy queue, whose worker (and its DLQ
drain) end the report SUCCEEDED or FAILED.

Idempotent: a terminal report is skipped, and a task sent twice runs once (the workers'
claim is a conditional write). Records no longer in the stream (past its retention) are
reported, not retried: nothing can bring them back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from functions.store import ReportStore
from reportgrid import tasks
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

# GetRecords returns at most this many records per call.
_GET_RECORDS_LIMIT: Final = 10_000
# A range is read in at most this many GetRecords calls (each returns records or moves the
# iterator on); past it the message is retried rather than the function timing out.
MAX_GET_RECORDS_CALLS: Final = 200
# SendMessageBatch takes 10 entries and 1 MiB in all.
SQS_BATCH_ENTRIES: Final = 10
SQS_BATCH_BYTES: Final = 1024 * 1024
# Errors that mean the shard or the records are gone (stream deleted, shard expired after a
# reshard, a sequence number past the retention): retrying cannot help.
_GONE: Final = frozenset({"ResourceNotFoundException", "InvalidArgumentException"})


class StreamFailureError(Exception):
    """Base of the drain's errors."""


class MalformedFailureRecord(StreamFailureError):
    """The message is not a Kinesis on-failure destination record. Permanent: the message
    goes to the failure queue's DLQ for an operator."""


class RetryMessage(StreamFailureError):
    """Transient trouble (throttling, timeouts, a partly failed send): the message is
    delivered again."""


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """The KinesisBatchInfo of an on-failure destination record."""

    stream_name: str
    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    batch_size: int
    condition: str = ""


def parse_failure_record(body: str) -> BatchInfo:
    """The batch an on-failure destination record names; MalformedFailureRecord if none."""
    try:
        document = json.loads(body)
        info = document["KinesisBatchInfo"]
        stream_arn = str(info["streamArn"])
        parsed = BatchInfo(
            # arn:aws:kinesis:<region>:<account>:stream/<name>
            stream_name=stream_arn.partition(":stream/")[2],
            shard_id=str(info["shardId"]),
            start_sequence_number=str(info["startSequenceNumber"]),
            end_sequence_number=str(info["endSequenceNumber"]),
            batch_size=int(info["batchSize"]),
            condition=str(document.get("requestContext", {}).get("condition", "")),
        )
        int(parsed.start_sequence_number)
        int(parsed.end_sequence_number)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise MalformedFailureRecord(
            f"not a Kinesis on-failure destination record: {type(err).__name__}"
        ) from None
    if not parsed.stream_name or parsed.batch_size < 1:
        raise MalformedFailureRecord("KinesisBatchInfo names no stream or an empty batch")
    return parsed


@dataclass(frozen=True, slots=True)
class RangeRead:
    """The records of a batch still in the stream, and how many are gone."""

    records: list[bytes]
    expired: int


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def read_range(kinesis: KinesisClient, info: BatchInfo) -> RangeRead:
    """Read the batch's records back: from its first sequence number (AT_SEQUENCE_NUMBER)
    until past its last. Raises RetryMessage on transient trouble."""
    start, end = int(info.start_sequence_number), int(info.end_sequence_number)
    try:
        iterator: str | None = kinesis.get_shard_iterator(
            StreamName=info.stream_name,
            ShardId=info.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=info.start_sequence_number,
        )["ShardIterator"]
    except ClientError as err:
        if _error_code(err) in _GONE:
            log.info("%s of %s is gone: %s", info.shard_id, info.stream_name, _error_code(err))
            return RangeRead([], info.batch_size)
        raise RetryMessage(f"GetShardIterator failed: {_error_code(err)}") from err
    except BotoCoreError as err:
        raise RetryMessage("GetShardIterator did not answer") from err
    found: list[bytes] = []
    for _ in range(MAX_GET_RECORDS_CALLS):
        if not iterator:
            break  # a closed shard, read to its end
        limit = min(_GET_RECORDS_LIMIT, info.batch_size - len(found) + 1)
        try:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=max(limit, 1))
        except ClientError as err:
            raise RetryMessage(f"GetRecords failed: {_error_code(err)}") from err
        except BotoCoreError as err:
            raise RetryMessage("GetRecords did not answer") from err
        for record in reply["Records"]:
            sequence = int(record["SequenceNumber"])
            if sequence > end:
                return _done(found, info)
            if sequence >= start:
                found.append(bytes(record["Data"]))
        if not reply["Records"] and not reply.get("MillisBehindLatest"):
            break  # at the tip of the shard: the rest of the range is not there
        iterator = reply.get("NextShardIterator")
    else:
        raise RetryMessage(f"{info.shard_id}: range not read in {MAX_GET_RECORDS_CALLS} calls")
    return _done(found, info)


def _done(found: list[bytes], info: BatchInfo) -> RangeRead:
    # Sequence numbers in a shard are unique and grow, so every record of the batch that
    # is still in the stream was found; the difference was trimmed (past the retention).
    return RangeRead(found, max(0, info.batch_size - len(found)))


@dataclass
class Redrive:
    """What one on-failure record came to."""

    read: int = 0
    expired: int = 0
    undecodable: int = 0
    terminal: int = 0
    redriven: list[str] = field(default_factory=list)  # report ids sent to the heavy queue


def select(records: Sequence[bytes], store: ReportStore, outcome: Redrive) -> list[TaskRecord]:
    """The tasks to re-drive: decodable, one per report, and not terminal."""
    chosen: dict[str, TaskRecord] = {}
    for data in records:
        try:
            task = tasks.decode(data)
        except tasks.UndecodableTask as err:
            outcome.undecodable += 1
            log.warning("skipping an undecodable task record: %s", err)
            continue
        if task.report_id in chosen:
            continue
        current = store.get(task.report_id)  # Unavailable propagates: retry the message
        if current is not None and current.terminal:
            outcome.terminal += 1
            continue
        chosen[task.report_id] = task
    return list(chosen.values())


def _batches(bodies: Sequence[str]) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    size = 0
    for index, body in enumerate(bodies):
        if batch and (len(batch) == SQS_BATCH_ENTRIES or size + len(body) > SQS_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((index, body))
        size += len(body)
    if batch:
        yield batch


def send(chosen: Sequence[TaskRecord], *, sqs: SQSClient, queue_url: str) -> None:
    """Send the tasks to the heavy queue; RetryMessage if any was not taken (sending the
    others again on the retry is harmless)."""
    bodies = [tasks.encode_text(task) for task in chosen]
    failed: list[str] = []
    for batch in _batches(bodies):
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "MessageBody": body} for index, body in batch
        ]
        try:
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as err:
            raise RetryMessage(f"SendMessageBatch failed for {len(entries)} task(s)") from err
        failed += [chosen[int(entry["Id"])].report_id for entry in response.get("Failed", [])]
    if failed:
        raise RetryMessage(f"the heavy queue did not take {len(failed)} task(s): {failed}")


def redrive(
    info: BatchInfo, *, kinesis: KinesisClient, store: ReportStore, sqs: SQSClient, queue_url: str
) -> Redrive:
    """Read the batch back and re-drive its unfinished tasks."""
    outcome = Redrive()
    read = read_range(kinesis, info)
    outcome.read, outcome.expired = len(read.records), read.expired
    chosen = select(read.records, store, outcome)
    if chosen:
        send(chosen, sqs=sqs, queue_url=queue_url)
    outcome.redriven = [task.report_id for task in chosen]
    return outcome
