"""The batching engine behind every write the edge acknowledges: the Kinesis producer (each
Submit's task) and the peer sender (multi-region copies) are both a `Batcher`.

Callers `await submit(payload, size, deadline)`; concurrent callers' entries are gathered
into one service call (up to `max_entries` entries / `max_bytes`), and each caller is
answered only once its own entry was accepted. Batching is adaptive: a batch goes when it is
full or when a short linger expires, and at most `max_in_flight` calls run at once, so under
load entries pile up while calls are in flight and the next batches are larger, not more.

An entry the service rejects (a partial failure, or a whole call that failed) is retried
alone, with jittered exponential backoff, while its caller's deadline allows; then the
caller gets the subclass's `Unavailable` (nothing was acknowledged: retrying is safe). An
entry whose caller went away before it was sent is dropped from its batch.

Every call's outcome is also recorded in `outcomes` (CallOutcomes): the edge's health reads
the producer's from there (grpc_edge/dependency_health.py), so a busy edge learns whether
Kinesis works from its own PutRecords calls, at no extra cost.
"""

from __future__ import annotations

import abc
import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from aws_lambda_powertools import Logger

from reportgrid.errors import Unavailable

logger = Logger(service="reportgrid-edge", child=True)

_RETRY_BASE_SECONDS: Final = 0.02
# Time kept back from a caller's deadline to answer it before the client gives up.
_ANSWER_MARGIN_SECONDS: Final = 0.02


@dataclass
class BatchStats:
    """Monotonic counters, read by the metrics flusher and by tests."""

    records_accepted: int = 0  # entries the service accepted (each answers one caller)
    batches: int = 0  # calls made
    batch_records: int = 0  # entries sent over all calls (sum of batch sizes)
    max_batch_size: int = 0
    record_retries: int = 0  # entries re-sent after a partial failure or a failed call
    failed_calls: int = 0  # calls that raised (every entry of them retried)
    records_given_up: int = 0  # callers answered Unavailable
    records_abandoned: int = 0  # callers gone before their entry was sent
    recent_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1024))


class CallOutcomes:
    """What the calls of one batcher did since the health monitor last looked: calls that
    got at least one entry accepted, calls that got none (raised, or every entry rejected:
    e.g. a whole batch throttled), and when each call still running started."""

    def __init__(self) -> None:
        self.accepted = 0
        self.failed = 0
        self.last_outcome_at: float | None = None  # time.monotonic()
        self._running: dict[int, float] = {}
        self._next_id = 0

    def begin(self) -> int:
        self._next_id += 1
        self._running[self._next_id] = time.monotonic()
        return self._next_id

    def end(self, call_id: int, *, ok: bool) -> None:
        self._running.pop(call_id, None)
        self.last_outcome_at = time.monotonic()
        if ok:
            self.accepted += 1
        else:
            self.failed += 1

    def forget(self, call_id: int) -> None:
        """A call cancelled (shutdown): no outcome."""
        self._running.pop(call_id, None)

    def oldest_running(self) -> float | None:
        """When the longest-running call started, or None when none runs."""
        return min(self._running.values(), default=None)

    def take(self) -> tuple[int, int]:
        """(accepted, failed) since the last take; resets both."""
        counts = (self.accepted, self.failed)
        self.accepted = self.failed = 0
        return counts


class Entry:
    """One caller's item: what to send, its share of a call's size, when its caller gives up."""

    __slots__ = ("attempts", "deadline", "future", "payload", "size")

    def __init__(
        self, payload: Any, size: int, deadline: float, future: asyncio.Future[None]
    ) -> None:
        self.payload = payload
        self.size = size
        self.deadline = deadline  # time.monotonic()
        self.future = future
        self.attempts = 0


class Batcher(abc.ABC):
    """Subclasses say how a batch is sent (`_call`) and what a caller is told when its entry
    cannot be accepted in time (`_unavailable`)."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        linger_seconds: float,
        max_in_flight: int,
        retry_max_seconds: float,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._linger = linger_seconds
        self._retry_max = retry_max_seconds
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._queue: deque[Entry] = deque()
        self._queued_bytes = 0
        # At most one flush is ever scheduled: the linger timer, or a flush at once when a
        # batch filled up. The producer costs the loop one callback per batch, not one
        # wake-up per record (a background task woken by events would).
        self._flush_timer: asyncio.TimerHandle | None = None  # the linger
        self._flush_now = False  # a flush at once is scheduled (call_soon)
        self._calls: set[asyncio.Task[None]] = set()
        self._retry_timers: set[asyncio.TimerHandle] = set()
        self._closing = False
        self.stats = BatchStats()
        self.outcomes = CallOutcomes()

    @abc.abstractmethod
    async def _call(self, batch: list[Entry]) -> set[int]:
        """Send one batch; return the indexes of the entries the service rejected. Raising
        means the whole call failed and every entry is retried."""

    @abc.abstractmethod
    def _unavailable(self) -> Unavailable:
        """What a caller whose entry was not accepted in time is told."""

    def start(self) -> None:  # noqa: B027 -- the producer protocol's; nothing to start
        """Nothing runs in the background: flushes are scheduled as entries arrive."""

    async def submit(self, payload: Any, size: int, deadline: float) -> None:
        """Return once the service accepted the entry; raise `_unavailable()` if it did not
        by `deadline` (a time.monotonic() value)."""
        if self._closing:
            raise Unavailable("this server is shutting down; retry", retry_after=0.1)
        if size > self._max_bytes:
            raise ValueError("an entry larger than a batch cannot be sent")
        entry = Entry(payload, size, deadline, asyncio.get_running_loop().create_future())
        self._enqueue(entry)
        try:
            await entry.future
        except asyncio.CancelledError:
            # The caller is gone; if the entry has not been sent it will be skipped.
            entry.future.cancel()
            raise

    def _enqueue(self, entry: Entry) -> None:
        self._queue.append(entry)
        self._queued_bytes += entry.size
        if self._in_flight >= self._max_in_flight:
            return  # the next call that ends sends what piled up meanwhile
        if self._flush_now:
            return
        full = len(self._queue) >= self._max_entries or self._queued_bytes >= self._max_bytes
        if full or self._linger <= 0:
            self._flush_now = True
            asyncio.get_running_loop().call_soon(self._flush)
        elif self._flush_timer is None:
            # Linger: let more callers join this batch, unless it fills up first.
            self._flush_timer = asyncio.get_running_loop().call_later(self._linger, self._flush)

    def _flush(self) -> None:
        """Send batches while calls may start and entries wait."""
        self._flush_now = False
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        loop = asyncio.get_running_loop()
        while self._queue and self._in_flight < self._max_in_flight:
            batch = self._take_batch()
            if not batch:
                continue
            self._in_flight += 1
            task = loop.create_task(self._send(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    def _take_batch(self) -> list[Entry]:
        batch: list[Entry] = []
        size = 0
        now = time.monotonic()
        while self._queue and len(batch) < self._max_entries:
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
        return batch

    async def _send(self, batch: list[Entry]) -> None:
        stats = self.stats
        stats.batches += 1
        stats.batch_records += len(batch)
        stats.max_batch_size = max(stats.max_batch_size, len(batch))
        stats.recent_batch_sizes.append(len(batch))
        call_id = self.outcomes.begin()
        try:
            rejected = await self._call(batch)
        except asyncio.CancelledError:
            self.outcomes.forget(call_id)
            raise
        except Exception as err:  # any failed call: every entry of it is retried
            self.outcomes.end(call_id, ok=False)
            stats.failed_calls += 1
            logger.warning(
                "batched call failed",
                extra={"batcher": type(self).__name__, "error": type(err).__name__},
            )
            for entry in batch:
                self._retry(entry)
            return
        finally:
            self._call_ended()
        self.outcomes.end(call_id, ok=len(rejected) < len(batch))
        for index, entry in enumerate(batch):
            if index in rejected:
                self._retry(entry)
            else:
                stats.records_accepted += 1
                if not entry.future.done():
                    entry.future.set_result(None)

    def _call_ended(self) -> None:
        self._in_flight -= 1
        # What piled up while the calls were out goes now, as one larger batch: under
        # load, batches grow instead of calls multiplying.
        if self._queue and not self._flush_now:
            self._flush()

    def _retry(self, entry: Entry) -> None:
        if entry.future.done():
            self.stats.records_abandoned += 1
            return
        entry.attempts += 1
        backoff = min(self._retry_max, _RETRY_BASE_SECONDS * 2**entry.attempts)
        delay = random.uniform(0, backoff)  # noqa: S311 -- jitter, not cryptography
        if time.monotonic() + delay + _ANSWER_MARGIN_SECONDS >= entry.deadline:
            self._give_up(entry)
            return
        self.stats.record_retries += 1
        timer: asyncio.TimerHandle

        def requeue() -> None:
            self._retry_timers.discard(timer)
            self._enqueue(entry)

        timer = asyncio.get_running_loop().call_later(delay, requeue)
        self._retry_timers.add(timer)

    def _give_up(self, entry: Entry) -> None:
        self.stats.records_given_up += 1
        if not entry.future.done():
            entry.future.set_exception(self._unavailable())

    async def close(self, within: float = 10.0) -> None:
        """Send what is queued, wait for calls in flight, then stop."""
        self._closing = True
        if self._queue and not self._flush_now:
            self._flush()
        deadline = time.monotonic() + within
        # Polled: three conditions, and only once, at shutdown.
        while self._queue or self._calls or self._retry_timers:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        for timer in list(self._retry_timers):
            timer.cancel()
        for entry in self._queue:
            self._give_up(entry)
        self._queue.clear()
