"""WatchReport: the current state, then every change, until the report is terminal.

Changes come from Redis pub/sub (the workers publish each written record on the report's
channel). One pub/sub connection per process serves every watcher (`EventHub`). DynamoDB is
re-read now and then even while subscribed (a lost publish cannot hang a watcher), and every
second when Redis is unavailable, so a watch survives the loss of Redis.

A cancel request lives in its own item (reportgrid/intents.py): the edge that takes it
publishes the report's view with `cancel_requested` at the same revision, and a watcher
keeps showing it until the report ends (a request is never withdrawn; a worker's record
published meanwhile does not carry it).

A quiet stream gets a heartbeat every `heartbeat_seconds`: Global Accelerator drops a TCP
flow after 340 s without data and the ALB's idle timer ignores HTTP/2 PINGs
(reportgrid/resources.py, GA_TCP_IDLE_TIMEOUT_SECONDS), so only a message keeps it open. A
stream ends (UNAVAILABLE, "watch again") when its own budget, at most
settings.max_watch_seconds, runs out; the SDK watches again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import redis.asyncio as aioredis
from aws_lambda_powertools import Logger
from google.protobuf import duration_pb2, timestamp_pb2

from grpc_edge.breaker import CircuitBreaker
from grpc_edge.reads import ReportReader, now_ms, view_missing
from reportgrid import records, resources
from reportgrid.errors import Unavailable
from reportgrid.ids import ReportId
from reportgrid.records import ReportRecord
from reportgrid.v1 import reports_pb2 as pb

logger = Logger(service="reportgrid-edge", child=True)

POLL_SECONDS: Final = 1.0  # without Redis
SAFETY_POLL_SECONDS: Final = 5.0  # with Redis: in case a publish was lost
_READ_SECONDS: Final = 2.0
# Put on a watcher's queue when pub/sub broke: poll from now on.
_LOST: Final = b""


class EventHub:
    """Fans one Redis pub/sub connection out to the watchers of this process."""

    def __init__(self, client: aioredis.Redis | None, breaker: CircuitBreaker) -> None:
        self._client = client
        self._breaker = breaker
        self._pubsub: aioredis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queues: dict[str, set[asyncio.Queue[bytes]]] = {}
        self.draining = False

    async def subscribe(self, channel: str) -> asyncio.Queue[bytes] | None:
        """A queue of the channel's messages, or None when Redis cannot be used now."""
        client = self._client
        if client is None:
            return None
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        if channel in self._queues:
            self._queues[channel].add(queue)
            return queue
        if self._pubsub is None:
            self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub = self._pubsub
        try:
            await self._breaker.call(lambda: pubsub.subscribe(channel))
        except Exception:  # BreakerOpen, timeout, connection error: poll instead
            return None
        self._queues.setdefault(channel, set()).add(queue)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
        return queue

    async def unsubscribe(self, channel: str, queue: asyncio.Queue[bytes] | None) -> None:
        watchers = self._queues.get(channel)
        if queue is None or watchers is None:
            return
        watchers.discard(queue)
        if not watchers:
            del self._queues[channel]
            pubsub = self._pubsub
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._breaker.call(lambda: pubsub.unsubscribe(channel))

    async def _read(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            while self._queues:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                name = channel.decode() if isinstance(channel, bytes) else str(channel)
                for queue in self._queues.get(name, ()):
                    with contextlib.suppress(asyncio.QueueFull):  # the poll catches up
                        queue.put_nowait(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as err:
            logger.warning("Redis pub/sub lost; watchers poll", extra={"error": type(err).__name__})
            self._lose_all()
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if self._pubsub is pubsub:
                self._pubsub = None

    def _lose_all(self) -> None:
        for watchers in self._queues.values():
            for queue in watchers:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(_LOST)
        self._queues.clear()

    async def close(self) -> None:
        self.draining = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]


def _view(
    report_id: ReportId, record: ReportRecord | None, cancel_seen: bool, full: bool
) -> pb.Report:
    if record is None:
        return view_missing(report_id)
    if cancel_seen and not record.terminal:
        record = record.with_(cancel_requested=True)
    return records.to_proto(record, now_ms=now_ms(), full=full)


def heartbeat(interval: float) -> pb.WatchReportResponse:
    sent_at = timestamp_pb2.Timestamp()
    sent_at.FromMilliseconds(now_ms())
    next_within = duration_pb2.Duration()
    next_within.FromMilliseconds(round(interval * 1000))
    return pb.WatchReportResponse(heartbeat=pb.Heartbeat(sent_at=sent_at, next_within=next_within))


def _newer(published: ReportRecord, known: ReportRecord) -> bool:
    """A later write, or the same one with a cancel request the watcher has not seen."""
    if published.revision != known.revision:
        return published.revision > known.revision
    return published.cancel_requested and not known.cancel_requested


async def watch_report(  # noqa: PLR0912, PLR0915 -- one loop over three event sources
    tenant: str,
    report_id: ReportId,
    reader: ReportReader,
    hub: EventHub,
    remaining: Callable[[], float],
    *,
    heartbeat_seconds: float,
    full: bool = False,
) -> AsyncIterator[pb.WatchReportResponse]:
    """Yield the report's views (FULL when `full`) until it is terminal, and a heartbeat
    whenever nothing was sent for `heartbeat_seconds`. `remaining` is the stream's budget:
    when it runs out the stream ends with UNAVAILABLE (a client deadline that comes first
    ends it earlier: grpc cancels the handler)."""

    def read_deadline() -> float:
        return time.monotonic() + min(_READ_SECONDS, remaining())

    record = await reader.lookup(tenant, report_id.value, read_deadline())
    cancel_seen = record is not None and record.cancel_requested
    last = _view(report_id, record, cancel_seen, full)
    yield pb.WatchReportResponse(report=last)
    if record is not None and record.terminal:
        return
    next_beat = time.monotonic() + heartbeat_seconds
    channel = resources.cache_events_channel(report_id.value)
    queue = await hub.subscribe(channel)
    try:
        # Re-read at once: a change between the first read and the subscription is not
        # published to us.
        next_read = time.monotonic()
        while True:
            if hub.draining:
                raise Unavailable("this server is shutting down; watch again", retry_after=0.1)
            if remaining() <= 0:
                raise Unavailable(
                    "this watch reached its longest duration; watch again", retry_after=0.0
                )
            now = time.monotonic()
            if now >= next_beat:
                yield heartbeat(heartbeat_seconds)
                next_beat = now + heartbeat_seconds
            wait = max(0.0, min(next_read - now, next_beat - now, remaining(), POLL_SECONDS))
            message: bytes | None = None
            if queue is not None:
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(queue.get(), wait)
            else:
                await asyncio.sleep(wait)
            if message == _LOST:
                queue = None
                next_read = time.monotonic()
                continue
            if message is not None:
                try:
                    published = records.decode_record(message)
                except (ValueError, KeyError, TypeError):
                    continue
                if published.tenant != tenant or published.report_id != report_id.value:
                    continue
                if record is not None and not _newer(published, record):
                    continue
                record = published
            elif time.monotonic() >= next_read:
                fresh = await reader.lookup(tenant, report_id.value, read_deadline(), fresh=True)
                next_read = time.monotonic() + (
                    POLL_SECONDS if queue is None else SAFETY_POLL_SECONDS
                )
                if fresh is None or (record is not None and fresh.revision < record.revision):
                    continue
                record = fresh
            else:
                continue
            cancel_seen = cancel_seen or record.cancel_requested
            view = _view(report_id, record, cancel_seen, full)
            if view != last:
                last = view
                yield pb.WatchReportResponse(report=view)
                next_beat = time.monotonic() + heartbeat_seconds
            if record is not None and record.terminal:
                return
    finally:
        await hub.unsubscribe(channel, queue)
