"""The loop every queue worker runs: poll SQS for as many messages as it has free slots,
handle each on a thread, stop taking work on stop(), and give held work a grace period.
The heavy-queue worker and the standby worker are both a `QueueConsumer`."""

from __future__ import annotations

import abc
import logging
import math
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from functions.process import receive

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# SQS's ceiling for a message's visibility timeout (12 hours).
MAX_VISIBILITY_SECONDS: Final = 43_200
# SQS returns at most ten messages per receive.
MAX_RECEIVE_BATCH: Final = 10


class QueueConsumer(abc.ABC):
    def __init__(
        self,
        *,
        sqs: SQSClient,
        queue_url: str,
        concurrency: int,
        lease_seconds: float,
        wait_seconds: int,
        log: logging.Logger,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._concurrency = concurrency
        # Messages are received for one lease and extended while their report runs.
        self._visibility = math.ceil(lease_seconds)
        self._wait_seconds = wait_seconds
        self._log = log
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop taking work (signal-safe: only sets a flag)."""
        self._stopping.set()

    @abc.abstractmethod
    def handle(self, message: MessageTypeDef) -> object:
        """Process one message on a worker thread."""

    def _before_poll(self) -> None:
        """Called before every poll (e.g. periodic housekeeping); nothing by default."""
        return None

    def _take(self, message: MessageTypeDef) -> bool:
        """Whether to handle a message just received; False leaves it to the queue."""
        return True

    def _serve(self, *, stop_grace_seconds: float, thread_name: str) -> bool:
        """Work until stop(); True when handled messages were still unfinished after the
        grace period."""
        threads = ThreadPoolExecutor(self._concurrency, thread_name_prefix=thread_name)
        running: set[Future[object]] = set()
        try:
            while not self._stopping.is_set():
                self._before_poll()
                running = {f for f in running if not f.done()}
                free = self._concurrency - len(running)
                if free <= 0:
                    wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                    continue
                for message in self._receive(min(MAX_RECEIVE_BATCH, free)):
                    if self._take(message):
                        running.add(threads.submit(self.handle, message))
            _, unfinished = wait(running, timeout=stop_grace_seconds)
            return bool(unfinished)
        finally:
            threads.shutdown(wait=False, cancel_futures=True)

    def _receive(self, count: int) -> list[MessageTypeDef]:
        return receive(
            self._sqs,
            self._queue_url,
            count=count,
            wait_seconds=self._wait_seconds,
            visibility_seconds=self._visibility,
            stopping=self._stopping,
            log=self._log,
        )

    def _delete(self, message: MessageTypeDef) -> None:
        try:
            self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except (ClientError, BotoCoreError):
            # The message comes back; handling it again is a no-op by the state machine.
            self._log.warning(
                "DeleteMessage failed for %s", message.get("MessageId"), exc_info=True
            )

    def _change_visibility(
        self, message: MessageTypeDef, seconds: int, *, queue_url: str | None = None
    ) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=queue_url or self._queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=max(0, min(seconds, MAX_VISIBILITY_SECONDS)),
            )
        except (ClientError, BotoCoreError):
            self._log.warning("ChangeMessageVisibility failed for %s", message.get("MessageId"))
