"""The Kinesis producers: every SubmitReport's task goes through one.

`KinesisProducer` batches callers' records into PutRecords calls (at most 500 records /
5 MiB each) with the shared engine in grpc_edge/batcher.py: each caller is answered only
once Kinesis accepted its own record, rejected records are retried within the caller's
deadline, and then the caller gets `Unavailable` (nothing acknowledged, retrying is safe).
`NaiveProducer` is the unbatched baseline the benchmark compares it with.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final, Literal, Protocol

from aws_lambda_powertools import Logger

from grpc_edge.batcher import Batcher, BatchStats, CallOutcomes, Entry
from grpc_edge.kinesis_writer import KinesisWriter
from reportgrid.errors import Unavailable

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_kinesis.client import KinesisClient

logger = Logger(service="reportgrid-edge", child=True)

MAX_BATCH_RECORDS: Final = 500
MAX_BATCH_BYTES: Final = 5 * 1024 * 1024
_RETRY_MAX_SECONDS: Final = 1.0


class TaskProducer(Protocol):
    """What the service needs of a producer: `put` returns once Kinesis holds the record."""

    stats: BatchStats
    outcomes: CallOutcomes  # each PutRecords call's outcome, for the edge's health

    def start(self) -> None: ...

    async def put(self, data: bytes, partition_key: str, deadline: float) -> None: ...

    async def close(self, within: float = 10.0) -> None: ...


class KinesisProducer(Batcher):
    """One per process, around what PutRecords goes through (created by the caller): the
    lean writer in production (grpc_edge/kinesis_writer.py), the aiobotocore client or a
    test's fault-injecting wrapper of it otherwise; all take the same call."""

    def __init__(
        self,
        client: KinesisWriter | KinesisClient,
        stream_name: str,
        *,
        linger_seconds: float = 0.002,
        max_in_flight: int = 8,
        max_batch_records: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        super().__init__(
            max_entries=max_batch_records,
            max_bytes=max_batch_bytes,
            linger_seconds=linger_seconds,
            max_in_flight=max_in_flight,
            retry_max_seconds=_RETRY_MAX_SECONDS,
        )
        self._client = client
        self._stream = stream_name

    async def put(self, data: bytes, partition_key: str, deadline: float) -> None:
        """Return once Kinesis accepted the record; raise Unavailable if it did not by
        `deadline` (a time.monotonic() value)."""
        # A record's share of the 5 MiB request limit: its data plus its partition key
        # (a report id: ASCII, so characters are bytes).
        size = len(data) + len(partition_key)
        await self.submit((data, partition_key), size, deadline)

    async def _call(self, batch: list[Entry]) -> set[int]:
        response = await self._client.put_records(
            StreamName=self._stream,
            Records=[{"Data": e.payload[0], "PartitionKey": e.payload[1]} for e in batch],
        )
        results = response.get("Records", [])
        # A missing result counts as a rejection: never acknowledge what Kinesis did not.
        return {
            index
            for index in range(len(batch))
            if index >= len(results) or results[index].get("ErrorCode")
        }

    def _unavailable(self) -> Unavailable:
        return Unavailable("the task log did not accept the report in time; retry")


class NaiveProducer:
    """One PutRecords call per record, awaited in the caller's own task: what a service
    without batching does. Selected with REPORTGRID_EDGE_PRODUCER=naive; it exists so the
    benchmark can show what the batching producer buys, with the rest of the edge unchanged.
    A rejected record is not retried: the caller gets Unavailable (nothing acknowledged)."""

    def __init__(self, client: KinesisWriter | KinesisClient, stream_name: str) -> None:
        self._client = client
        self._stream = stream_name
        self._closing = False
        self.stats = BatchStats()
        self.outcomes = CallOutcomes()

    def start(self) -> None:
        return None  # nothing runs in the background

    async def put(self, data: bytes, partition_key: str, deadline: float) -> None:
        if self._closing:
            raise Unavailable("this server is shutting down; retry", retry_after=0.1)
        stats = self.stats
        stats.batches += 1
        stats.batch_records += 1
        stats.max_batch_size = 1
        stats.recent_batch_sizes.append(1)
        call_id = self.outcomes.begin()
        try:
            response = await asyncio.wait_for(
                self._client.put_records(
                    StreamName=self._stream, Records=[{"Data": data, "PartitionKey": partition_key}]
                ),
                max(0.0, deadline - time.monotonic()),
            )
        except Exception as err:
            self.outcomes.end(call_id, ok=False)
            stats.failed_calls += 1
            stats.records_given_up += 1
            logger.warning("PutRecords call failed", extra={"error": type(err).__name__})
            raise Unavailable("the task log did not accept the report; retry") from None
        results = response.get("Records") or [{"ErrorCode": "Missing"}]
        failed = bool(response.get("FailedRecordCount") or results[0].get("ErrorCode"))
        self.outcomes.end(call_id, ok=not failed)
        if failed:
            stats.records_given_up += 1
            raise Unavailable("the task log did not accept the report; retry")
        stats.records_accepted += 1

    async def close(self, within: float = 10.0) -> None:
        self._closing = True


ProducerKind = Literal["batching", "naive"]


def make_producer(
    kind: ProducerKind,
    client: KinesisWriter | KinesisClient,
    stream_name: str,
    *,
    linger_seconds: float = 0.002,
    max_in_flight: int = 8,
) -> TaskProducer:
    """The producer the settings ask for (REPORTGRID_EDGE_PRODUCER)."""
    if kind == "naive":
        return NaiveProducer(client, stream_name)
    return KinesisProducer(
        client, stream_name, linger_seconds=linger_seconds, max_in_flight=max_in_flight
    )
