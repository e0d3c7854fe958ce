"""The queue worker's loop: long-poll SQS, run each report under a lease with bounded
concurrency, extend the message's visibility while it runs, delete it only after the
terminal write.

Retries: a transient failure hands the message back (short visibility) until its
HEAVY_MAX_RECEIVES-th receive; a failure on that last allowed receive ends the report
FAILED and deletes the message, so the report does not stay RUNNING while its message
moves to the DLQ.

Shutdown (SIGTERM): stop receiving, let running reports finish within the grace period,
then release what is still held (visibility 0, lease expired) and exit 0.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Final

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from functions.runner import Outcome, Runner, is_transient_error
from reportgrid import resources, tasks
from reportgrid.task.v1.task_pb2 import TaskRecord

log = logging.getLogger(__name__)

RECEIVE_COUNT: Final = "ApproximateReceiveCount"
MAX_VISIBILITY_SECONDS: Final = 12 * 3600
RETRY_BACKOFF_CAP_SECONDS: Final = 60
DEFAULT_STOP_GRACE_SECONDS: Final = 100.0


class QueueWorker:
    def __init__(
        self,
        runner: Runner,
        *,
        sqs: Any,
        queue_url: str,
        concurrency: int,
        lease_seconds: float,
        wait_seconds: int = 20,
        max_receives: int = resources.HEAVY_MAX_RECEIVES,
        metrics: Metrics | None = None,
    ) -> None:
        self._runner = runner
        self._sqs = sqs
        self._queue_url = queue_url
        self._concurrency = concurrency
        self._visibility = math.ceil(lease_seconds)
        self._wait_seconds = wait_seconds
        self._max_receives = max_receives
        self._metrics = metrics
        self._stopping = threading.Event()
        self._held: dict[str, dict[str, Any]] = {}  # message id -> message, while running
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Stop taking work (signal-safe: only sets a flag)."""
        self._stopping.set()

    def run(self, *, stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS) -> int:
        """Work until stop(); return the number of messages released unfinished."""
        threads = ThreadPoolExecutor(self._concurrency, thread_name_prefix="report")
        running: set[Future[None]] = set()
        try:
            while not self._stopping.is_set():
                running = {f for f in running if not f.done()}
                free = self._concurrency - len(running)
                if free <= 0:
                    wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                    continue
                for message in self._receive(min(10, free)):
                    if self._stopping.is_set():
                        self._change_visibility(message, 0)
                        continue
                    with self._lock:
                        self._held[message["MessageId"]] = message
                    running.add(threads.submit(self._handle, message))
            _, unfinished = wait(running, timeout=stop_grace_seconds)
            released = self._release_held() if unfinished else 0
        finally:
            threads.shutdown(wait=False, cancel_futures=True)
        return released

    def _receive(self, count: int) -> list[dict[str, Any]]:
        try:
            response = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._wait_seconds,
                VisibilityTimeout=self._visibility,
                MessageSystemAttributeNames=[RECEIVE_COUNT],
            )
        except (ClientError, BotoCoreError):
            log.warning("ReceiveMessage failed; polling again", exc_info=True)
            self._stopping.wait(1.0)
            return []
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _release_held(self) -> int:
        with self._lock:
            held = list(self._held.values())
        for message in held:
            self._change_visibility(message, 0)
        log.warning("released %d unfinished messages at shutdown", len(held))
        return len(held)

    def _handle(self, message: dict[str, Any]) -> None:
        try:
            self._process(message)
        except Exception:
            log.exception("handling message %s failed", message.get("MessageId"))
        finally:
            with self._lock:
                self._held.pop(message["MessageId"], None)

    def _process(self, message: dict[str, Any]) -> None:
        receives = int(message.get("Attributes", {}).get(RECEIVE_COUNT, "1"))
        try:
            task = tasks.decode_text(message["Body"])
        except tasks.UndecodableTask as err:
            # Nothing to run and no report to fail: count it and drop it.
            log.error("deleting an undecodable message %s: %s", message["MessageId"], err)
            self._count("PoisonRecords")
            self._delete(message)
            return
        try:
            result = self._runner.run(
                task, heartbeat_hooks=[lambda: self._change_visibility(message, self._visibility)]
            )
        except Exception as err:
            self._after_error(message, task, receives, err)
            return
        if result.outcome is Outcome.BUSY:
            # Another worker holds it: look again once its lease has run out.
            self._change_visibility(message, math.ceil(result.retry_after_seconds) + 1)
            return
        if result.outcome is Outcome.SUCCEEDED:
            self._count(resources.METRIC.REPORTS_COMPLETED)
        elif result.outcome is Outcome.FAILED:
            self._count(resources.METRIC.REPORTS_FAILED)
        self._delete(message)

    def _after_error(
        self, message: dict[str, Any], task: TaskRecord, receives: int, err: Exception
    ) -> None:
        if is_transient_error(err) and receives < self._max_receives:
            log.warning("report %s: transient failure (receive %d)", task.report_id, receives)
            self._change_visibility(message, min(2**receives, RETRY_BACKOFF_CAP_SECONDS))
            return
        log.error(
            "report %s failed on receive %d of %d; ending it FAILED",
            task.report_id,
            receives,
            self._max_receives,
            exc_info=err,
        )
        try:
            self._runner.fail_permanently(
                task,
                reason="RETRIES_EXHAUSTED",
                message=f"the report could not be completed after {receives} attempts; "
                "submit it again",
            )
        except Exception:
            log.exception("could not mark %s FAILED; the message stays queued", task.report_id)
            return
        self._count(resources.METRIC.REPORTS_FAILED)
        self._delete(message)

    def _delete(self, message: dict[str, Any]) -> None:
        try:
            self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except (ClientError, BotoCoreError):
            # The message comes back; the report is terminal, so its rerun is a no-op.
            log.warning("DeleteMessage failed for %s", message["MessageId"], exc_info=True)

    def _change_visibility(self, message: dict[str, Any], seconds: int) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=max(0, min(seconds, MAX_VISIBILITY_SECONDS)),
            )
        except (ClientError, BotoCoreError):
            log.warning("ChangeMessageVisibility failed for %s", message["MessageId"])

    def _count(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.add_metric(name, MetricUnit.Count, 1)
