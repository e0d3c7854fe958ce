"""The peer sender: for DURABILITY_MULTI_REGION, a Submit is acknowledged only after the
local task log AND the peer region's standby queue accepted its task.

One aioboto3 SQS client for the peer region, created here. Callers `await send(task,
deadline)`; copies of concurrent callers are gathered into SendMessageBatch calls (at most
ten entries and SQS's batch payload each), each entry delayed so that it becomes visible a
grace period after the task was accepted. A rejected entry is retried with jittered backoff
while its caller's deadline allows; then the caller gets Unavailable with a RetryInfo
(nothing is promised; the SDK retries with the same idempotency key, so the same report).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final

import aioboto3
from aiobotocore.config import AioConfig
from aws_lambda_powertools import Logger

from reportgrid import tasks
from reportgrid.errors import Unavailable
from reportgrid.mirroring import SQS_BATCH_BYTES, SQS_BATCH_ENTRIES, delay_for, mirrored_copy
from reportgrid.settings import Settings
from reportgrid.task.v1.task_pb2 import TaskRecord

logger = Logger(service="reportgrid-edge", child=True)

_RETRY_BASE_SECONDS: Final = 0.02
_RETRY_MAX_SECONDS: Final = 0.5
# Kept back from the caller's deadline to answer before the client gives up.
_ANSWER_MARGIN_SECONDS: Final = 0.02
# What the caller is told to wait before retrying when the peer did not accept in time.
PEER_RETRY_AFTER_SECONDS: Final = 1.0


@dataclass
class PeerStats:
    batches: int = 0
    accepted: int = 0
    retries: int = 0
    given_up: int = 0


@dataclass(eq=False)
class _Entry:
    body: str
    delay: int
    deadline: float  # time.monotonic()
    future: asyncio.Future[None]
    attempts: int = 0
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.body.encode())


class PeerSender:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        *,
        grace_seconds: int,
        linger_seconds: float = 0.002,
        max_in_flight: int = 8,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self._grace = grace_seconds
        self._linger = linger_seconds
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queue: deque[_Entry] = deque()
        self._wakeup = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._closing = False
        self.stats = PeerStats()

    @classmethod
    async def open(cls, settings: Settings) -> PeerSender | None:
        """The sender for this region's peer, or None when no peer is configured."""
        if not settings.peer_standby_queue_url or not settings.peer_region:
            return None
        stack = contextlib.AsyncExitStack()
        sqs = await stack.enter_async_context(
            aioboto3.Session().client(
                "sqs",
                region_name=settings.peer_region,
                endpoint_url=settings.aws_endpoint_url,
                # Retried here, within each caller's deadline.
                config=AioConfig(
                    retries={"max_attempts": 1},
                    connect_timeout=2,
                    read_timeout=5,
                    max_pool_connections=64,
                    tcp_keepalive=True,
                ),
            )
        )
        sender = cls(
            sqs, settings.peer_standby_queue_url, grace_seconds=settings.mirror_grace_seconds
        )
        sender._stack = stack
        return sender

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def send(self, task: TaskRecord, deadline: float) -> None:
        """Return once the peer's standby queue accepted a mirrored copy of `task`; raise
        Unavailable if it did not by `deadline` (a time.monotonic() value)."""
        if self._closing:
            raise Unavailable("this server is shutting down; retry", retry_after=0.1)
        self.start()
        body = tasks.encode_text(mirrored_copy(task))
        delay = delay_for(task, grace_seconds=self._grace, now_ms=time.time_ns() // 1_000_000)
        entry = _Entry(body, delay, deadline, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        self._wakeup.set()
        try:
            await entry.future
        except asyncio.CancelledError:
            entry.future.cancel()  # not sent yet: skipped; in flight: its answer is dropped
            raise

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if len(self._queue) < SQS_BATCH_ENTRIES and self._linger > 0:
                await asyncio.sleep(self._linger)  # let concurrent callers join the batch
            await self._slots.acquire()
            batch = self._take_batch()
            if not batch:
                self._slots.release()
                continue
            call = asyncio.get_running_loop().create_task(self._send(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    def _take_batch(self) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        now = time.monotonic()
        while self._queue and len(batch) < SQS_BATCH_ENTRIES:
            entry = self._queue[0]
            if batch and size + entry.size > SQS_BATCH_BYTES:
                break
            self._queue.popleft()
            if entry.future.done():
                continue
            if now >= entry.deadline:
                self._give_up(entry)
                continue
            batch.append(entry)
            size += entry.size
        if not self._queue:
            self._wakeup.clear()
        return batch

    async def _send(self, batch: list[_Entry]) -> None:
        self.stats.batches += 1
        budget = max(e.deadline for e in batch) - time.monotonic()
        try:
            response = await asyncio.wait_for(
                self._sqs.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": e.body, "DelaySeconds": e.delay}
                        for i, e in enumerate(batch)
                    ],
                ),
                max(0.001, budget),
            )
        except Exception as err:  # a failed or timed-out call: every entry is retried
            logger.warning("peer SendMessageBatch failed", extra={"error": type(err).__name__})
            for entry in batch:
                self._retry(entry)
            return
        finally:
            self._slots.release()
        failed = {int(f["Id"]) for f in response.get("Failed", [])}
        for index, entry in enumerate(batch):
            if index in failed:
                self._retry(entry)
            elif not entry.future.done():
                self.stats.accepted += 1
                entry.future.set_result(None)

    def _retry(self, entry: _Entry) -> None:
        if entry.future.done():
            return
        entry.attempts += 1
        backoff = min(_RETRY_MAX_SECONDS, _RETRY_BASE_SECONDS * 2**entry.attempts)
        delay = random.uniform(0, backoff)  # noqa: S311 -- jitter, not cryptography
        if time.monotonic() + delay + _ANSWER_MARGIN_SECONDS >= entry.deadline:
            self._give_up(entry)
            return
        self.stats.retries += 1

        def requeue() -> None:
            self._queue.append(entry)
            self._wakeup.set()

        asyncio.get_running_loop().call_later(delay, requeue)

    def _give_up(self, entry: _Entry) -> None:
        self.stats.given_up += 1
        if not entry.future.done():
            entry.future.set_exception(
                Unavailable(
                    "the peer region's standby queue did not accept the report in time; "
                    "retry, or submit with DURABILITY_REGIONAL",
                    retry_after=PEER_RETRY_AFTER_SECONDS,
                )
            )

    async def close(self) -> None:
        self._closing = True
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=5.0)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for entry in self._queue:
            self._give_up(entry)
        self._queue.clear()
        if self._stack is not None:
            await self._stack.aclose()

    async def ping(self) -> None:
        """A cheap call that proves the peer queue answers."""
        await self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )


async def send_both(local: Awaitable[None], peer: Awaitable[None]) -> None:
    """Await both sends; raise the first failure (after both ended, so neither is left
    running unobserved)."""
    results = await asyncio.gather(local, peer, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
