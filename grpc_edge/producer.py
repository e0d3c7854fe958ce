"""The async batching Kinesis producer: every SubmitReport's task goes through it.

Callers `await put(data, partition_key, deadline)`; the producer gathers their records into
PutRecords calls (at most 500 records / 5 MiB each) and answers each caller only once its
own record was accepted by Kinesis. Batching is adaptive: a batch is sent when it is full or
when a short linger expires, and at most `max_in_flight` calls run at once, so under load
records pile up while calls are in flight and the next batches are larger instead of more.

A record that PutRecords rejects (partial failure: throttling, internal error) is retried
alone, with jittered exponential backoff, for as long as its caller's deadline allows; then
the caller gets `Unavailable` (nothing was acknowledged, retrying is safe). A record whose
caller went away (cancelled, deadline passed) before it was sent is dropped from the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from aws_lambda_powertools import Logger

from reportgrid.errors import Unavailable

logger = Logger(service="reportgrid-edge", child=True)

MAX_BATCH_RECORDS: Final = 500
MAX_BATCH_BYTES: Final = 5 * 1024 * 1024
# A record's share of the 5 MiB request limit: its data plus its partition key.
_RETRY_BASE_SECONDS: Final = 0.02
_RETRY_MAX_SECONDS: Final = 1.0
# Time kept back from a caller's deadline to answer it before the client gives up.
_ANSWER_MARGIN_SECONDS: Final = 0.02


@dataclass
class ProducerStats:
    """Monotonic counters, read by the metrics flusher and by tests."""

    records_accepted: int = 0  # records Kinesis accepted (each answers one caller)
    batches: int = 0  # PutRecords calls made
    batch_records: int = 0  # records sent over all calls (sum of batch sizes)
    max_batch_size: int = 0
    record_retries: int = 0  # records re-sent after a partial failure or a failed call
    failed_calls: int = 0  # PutRecords calls that raised (every record of them retried)
    records_given_up: int = 0  # callers answered Unavailable
    records_abandoned: int = 0  # callers gone before their record was sent
    recent_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1024))


class TaskProducer(Protocol):
    """What the service needs of a producer: `put` returns once Kinesis holds the record."""

    stats: ProducerStats

    def start(self) -> None: ...

    async def put(self, data: bytes, partition_key: str, deadline: float) -> None: ...

    async def close(self, within: float = 10.0) -> None: ...


class _Entry:
    __slots__ = ("attempts", "data", "deadline", "future", "partition_key", "size")

    def __init__(
        self, data: bytes, partition_key: str, deadline: float, future: asyncio.Future[None]
    ) -> None:
        self.data = data
        self.partition_key = partition_key
        self.deadline = deadline  # time.monotonic()
        self.future = future
        self.attempts = 0
        self.size = len(data) + len(partition_key.encode())  # its share of a request


class KinesisProducer:
    """One per process, around one aioboto3 Kinesis client (created by the caller)."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        linger_seconds: float = 0.002,
        max_in_flight: int = 8,
        max_batch_records: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._client = client
        self._stream = stream_name
        self._linger = linger_seconds
        self._max_records = max_batch_records
        self._max_bytes = max_batch_bytes
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queue: deque[_Entry] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._retry_timers: set[asyncio.TimerHandle] = set()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = ProducerStats()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def put(self, data: bytes, partition_key: str, deadline: float) -> None:
        """Return once Kinesis accepted the record; raise Unavailable if it did not by
        `deadline` (a time.monotonic() value)."""
        if self._closing:
            raise Unavailable("this server is shutting down; retry", retry_after=0.1)
        entry = _Entry(data, partition_key, deadline, asyncio.get_running_loop().create_future())
        if entry.size > self._max_bytes:
            raise ValueError("a record larger than a batch cannot be sent")
        self._enqueue(entry)
        try:
            await entry.future
        except asyncio.CancelledError:
            # The caller is gone; if the record has not been sent it will be skipped.
            entry.future.cancel()
            raise

    def _enqueue(self, entry: _Entry) -> None:
        self._queue.append(entry)
        self._queued_bytes += entry.size
        self._wakeup.set()
        if len(self._queue) >= self._max_records or self._queued_bytes >= self._max_bytes:
            self._full.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._queue:
                self._wakeup.clear()
                continue
            if not self._full.is_set() and self._linger > 0:
                # Linger: let more callers join this batch, unless it fills up first.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
            await self._slots.acquire()
            batch = self._take_batch()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    def _take_batch(self) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        now = time.monotonic()
        while self._queue and len(batch) < self._max_records:
            entry = self._queue[0]
            if size + entry.size > self._max_bytes:
                break
            self._queue.popleft()
            self._queued_bytes -= entry.size
            if entry.future.done():  # the caller went away: never send it
                self.stats.records_abandoned += 1
                continue
            if now >= entry.deadline:
                self._give_up(entry)
                continue
            batch.append(entry)
            size += entry.size
        if len(self._queue) < self._max_records and self._queued_bytes < self._max_bytes:
            self._full.clear()
        if not self._queue:
            self._wakeup.clear()
        return batch

    async def _send(self, batch: list[_Entry]) -> None:
        stats = self.stats
        stats.batches += 1
        stats.batch_records += len(batch)
        stats.max_batch_size = max(stats.max_batch_size, len(batch))
        stats.recent_batch_sizes.append(len(batch))
        try:
            response = await self._client.put_records(
                StreamName=self._stream,
                Records=[{"Data": e.data, "PartitionKey": e.partition_key} for e in batch],
            )
        except Exception as err:  # any failed call: every record of it is retried
            stats.failed_calls += 1
            logger.warning("PutRecords call failed", extra={"error": type(err).__name__})
            for entry in batch:
                self._retry(entry)
            return
        finally:
            self._slots.release()
        results = response.get("Records", [])
        for index, entry in enumerate(batch):
            result = results[index] if index < len(results) else {"ErrorCode": "Missing"}
            if result.get("ErrorCode"):
                self._retry(entry)
            else:
                stats.records_accepted += 1
                if not entry.future.done():
                    entry.future.set_result(None)

    def _retry(self, entry: _Entry) -> None:
        entry.attempts += 1
        backoff = min(_RETRY_MAX_SECONDS, _RETRY_BASE_SECONDS * 2**entry.attempts)
        delay = random.uniform(0, backoff)  # noqa: S311 -- jitter, not cryptography
        if entry.future.done():
            self.stats.records_abandoned += 1
            return
        if time.monotonic() + delay + _ANSWER_MARGIN_SECONDS >= entry.deadline:
            self._give_up(entry)
            return
        self.stats.record_retries += 1
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def requeue() -> None:
            self._retry_timers.discard(timer)
            self._enqueue(entry)

        timer = loop.call_later(delay, requeue)
        self._retry_timers.add(timer)

    def _give_up(self, entry: _Entry) -> None:
        self.stats.records_given_up += 1
        if not entry.future.done():
            entry.future.set_exception(
                Unavailable("the task log did not accept the report in time; retry")
            )

    async def close(self, within: float = 10.0) -> None:
        """Send what is queued, wait for calls in flight, then stop."""
        self._closing = True
        self._wakeup.set()
        deadline = time.monotonic() + within
        # Polled: three conditions, and only once, at shutdown.
        while self._queue or self._calls or self._retry_timers:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for timer in list(self._retry_timers):
            timer.cancel()
        for entry in self._queue:
            self._give_up(entry)
        self._queue.clear()


class NaiveProducer:
    """One PutRecords call per record, awaited in the caller's own task: what a service
    without batching does. Selected with REPORTGRID_EDGE_PRODUCER=naive; it exists so the
    benchmark can show what the batching producer buys, with the rest of the edge unchanged.
    A rejected record is not retried: the caller gets Unavailable (nothing acknowledged)."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client = client
        self._stream = stream_name
        self._closing = False
        self.stats = ProducerStats()

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
        try:
            response = await asyncio.wait_for(
                self._client.put_records(
                    StreamName=self._stream, Records=[{"Data": data, "PartitionKey": partition_key}]
                ),
                max(0.0, deadline - time.monotonic()),
            )
        except Exception as err:
            stats.failed_calls += 1
            stats.records_given_up += 1
            logger.warning("PutRecords call failed", extra={"error": type(err).__name__})
            raise Unavailable("the task log did not accept the report; retry") from None
        results = response.get("Records") or [{"ErrorCode": "Missing"}]
        if response.get("FailedRecordCount") or results[0].get("ErrorCode"):
            stats.records_given_up += 1
            raise Unavailable("the task log did not accept the report; retry")
        stats.records_accepted += 1

    async def close(self, within: float = 10.0) -> None:
        self._closing = True


ProducerKind = Literal["batching", "naive"]


def make_producer(
    kind: ProducerKind,
    client: Any,
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
