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
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final

import aioboto3
from aiobotocore.config import AioConfig

from grpc_edge.batcher import Batcher, Entry
from reportgrid import tasks
from reportgrid.errors import Unavailable
from reportgrid.mirroring import SQS_BATCH_BYTES, SQS_BATCH_ENTRIES, delay_for, mirrored_copy
from reportgrid.settings import Settings
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_sqs.client import SQSClient

_RETRY_MAX_SECONDS: Final = 0.5
# What the caller is told to wait before retrying when the peer did not accept in time.
PEER_RETRY_AFTER_SECONDS: Final = 1.0


class PeerSender(Batcher):
    """Copies of multi-region Submits into the peer's standby queue, batched by the shared
    engine (grpc_edge/batcher.py) into SendMessageBatch calls."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        grace_seconds: int,
        linger_seconds: float = 0.002,
        max_in_flight: int = 8,
    ) -> None:
        super().__init__(
            max_entries=SQS_BATCH_ENTRIES,
            max_bytes=SQS_BATCH_BYTES,
            linger_seconds=linger_seconds,
            max_in_flight=max_in_flight,
            retry_max_seconds=_RETRY_MAX_SECONDS,
        )
        self._sqs = sqs
        self.queue_url = queue_url
        self._grace = grace_seconds
        self._stack: contextlib.AsyncExitStack | None = None

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

    async def send(self, task: TaskRecord, deadline: float) -> None:
        """Return once the peer's standby queue accepted a mirrored copy of `task`; raise
        Unavailable if it did not by `deadline` (a time.monotonic() value)."""
        body = tasks.encode_text(mirrored_copy(task))
        delay = delay_for(task, grace_seconds=self._grace, now_ms=time.time_ns() // 1_000_000)
        await self.submit((body, delay), len(body.encode()), deadline)

    async def _call(self, batch: list[Entry]) -> set[int]:
        # Bounded by the latest caller's deadline: a hung call must not outlive its callers.
        budget = max(e.deadline for e in batch) - time.monotonic()
        response = await asyncio.wait_for(
            self._sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": e.payload[0], "DelaySeconds": e.payload[1]}
                    for i, e in enumerate(batch)
                ],
            ),
            max(0.001, budget),
        )
        return {int(failure["Id"]) for failure in response.get("Failed", [])}

    def _unavailable(self) -> Unavailable:
        return Unavailable(
            "the peer region's standby queue did not accept the report in time; "
            "retry, or submit with DURABILITY_REGIONAL",
            retry_after=PEER_RETRY_AFTER_SECONDS,
        )

    async def close(self, within: float = 5.0) -> None:
        await super().close(within)
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
