"""The queue worker's loop: long-poll SQS, run each report under a lease with bounded
concurrency, extend the message's visibility while it runs, delete it only after the
terminal write.

Retries: a transient failure hands the message back (short visibility) until its
HEAVY_MAX_RECEIVES-th receive; a failure on that last allowed receive ends the report
FAILED and deletes the message, so the report does not stay RUNNING while its message
moves to the DLQ.

A worker killed while it holds the message on its last allowed receive cannot end the
report itself: SQS moves the message to the DLQ and the report would stay RUNNING. So the
worker also drains the DLQ (found from the queue's RedrivePolicy) every
`dlq_interval_seconds`: each task there ends FAILED with RETRIES_EXHAUSTED (idempotent: a
terminal report is left alone) and its message is hidden for MAX_VISIBILITY_SECONDS, kept
for operators until the DLQ's retention drops it.

Fairness: a task whose tenant has its max_running reports running (functions/
tenant_slots.py; checked before the claim, by Runner.run) is put off again: a new message
with a longer delay, then the old one deleted (functions/deferral.py says why a visibility
change would not do), so waiting never counts towards the DLQ. The heavy queue also holds
the light tasks the stream worker put off; they run here with the light path's limits.

Shutdown (SIGTERM): stop receiving, let running reports finish within the grace period,
then release what is still held (visibility 0, lease expired) and exit 0. Receives wait at
most POLL_SLICE_SECONDS, so an idle worker notices SIGTERM within about a second.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from functions.consumer import MAX_VISIBILITY_SECONDS, QueueConsumer
from functions.deferral import Deferred, attributes_of, count_deferred, defer, delay_seconds
from functions.process import RECEIVE_COUNT
from functions.runner import (
    WORKER_ERROR,
    WORKER_ERROR_MESSAGE,
    Outcome,
    Runner,
    RunResult,
    is_transient_error,
)
from functions.segments import SegmentSender
from reportgrid import resources, tasks, tracing
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)
_TERMINAL = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED})

RETRY_BACKOFF_CAP_SECONDS: Final = 60
DEFAULT_STOP_GRACE_SECONDS: Final = 100.0
# The longest single ReceiveMessage wait: bounds how long SIGTERM waits on an idle poll.
DEFAULT_DLQ_INTERVAL_SECONDS: Final = 30.0
RETRIES_EXHAUSTED: Final = "RETRIES_EXHAUSTED"


class QueueWorker(QueueConsumer):
    def __init__(
        self,
        runner: Runner,
        *,
        sqs: SQSClient,
        queue_url: str,
        concurrency: int,
        lease_seconds: float,
        wait_seconds: int = 20,
        max_receives: int = resources.HEAVY_MAX_RECEIVES,
        metrics: Metrics | None = None,
        dlq_url: str | None = None,
        dlq_interval_seconds: float = DEFAULT_DLQ_INTERVAL_SECONDS,
        service: str = resources.SERVICE_QUEUE_WORKER,
        segments: SegmentSender | None = None,
    ) -> None:
        super().__init__(
            sqs=sqs,
            queue_url=queue_url,
            concurrency=concurrency,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
            log=log,
        )
        self._runner = runner
        self._max_receives = max_receives
        self._metrics = metrics
        self._service = service  # the metrics' service dimension
        # Each report's X-Ray segment, in the report's trace (none without a daemon).
        self._segments = segments or SegmentSender(None, name=service)
        self._metrics_lock = threading.Lock()  # Powertools Metrics is not thread-safe
        self._dlq_url = dlq_url
        self._dlq_interval = dlq_interval_seconds
        self._next_drain = 0.0  # time.monotonic(): drain at once on start
        self._held: dict[str, MessageTypeDef] = {}  # message id -> message, while running
        self._lock = threading.Lock()

    def run(self, *, stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS) -> int:
        """Work until stop(); return the number of messages released unfinished."""
        unfinished = self._serve(stop_grace_seconds=stop_grace_seconds, thread_name="report")
        return self._release_held() if unfinished else 0

    def _before_poll(self) -> None:
        self._maybe_drain_dlq()

    def _take(self, message: MessageTypeDef) -> bool:
        if self._stopping.is_set():
            self._change_visibility(message, 0)  # received while stopping: give it back
            return False
        with self._lock:
            self._held[message["MessageId"]] = message
        return True

    def _release_held(self) -> int:
        with self._lock:
            held = list(self._held.values())
        for message in held:
            self._change_visibility(message, 0)
        log.warning("released %d unfinished messages at shutdown", len(held))
        return len(held)

    def handle(self, message: MessageTypeDef) -> None:
        try:
            self._process(message)
        except Exception:
            log.exception("handling message %s failed", message.get("MessageId"))
        finally:
            with self._lock:
                self._held.pop(message["MessageId"], None)

    def _process(self, message: MessageTypeDef) -> None:
        receives = int(message.get("Attributes", {}).get(RECEIVE_COUNT, "1"))
        try:
            task = tasks.decode_text(message["Body"])
        except tasks.UndecodableTask as err:
            # Nothing to run and no report to fail: count it and drop it.
            log.error("deleting an undecodable message %s: %s", message["MessageId"], err)
            self._count("PoisonRecords")
            self._delete(message)
            return
        tracing.log_step(log, "picked_up", task, receives=receives)
        result = self._run(message, task, receives)
        if result is None:
            return
        if result.outcome in _TERMINAL:  # time_to_terminal_ms: the slowest-reports query
            tracing.log_step(
                log,
                "terminal",
                task,
                outcome=result.outcome.value,
                duration_ms=result.duration_ms,
                time_to_terminal_ms=tracing.time_to_terminal_ms(task),
            )
        else:
            tracing.log_step(
                log, "ran", task, outcome=result.outcome.value, duration_ms=result.duration_ms
            )
        if result.outcome is Outcome.BUSY:
            # Another worker holds it: look again once its lease has run out.
            self._change_visibility(message, math.ceil(result.retry_after_seconds) + 1)
            return
        if result.outcome is Outcome.DEFERRED:
            self._put_off(message, task)
            return
        deferrals, _ = attributes_of(message)
        if deferrals:  # it waited for its tenant's slot and has had it
            waited = int(time.time() * 1000) - task.accept_time.ToMilliseconds()
            self._emit(resources.METRIC.SLOT_WAIT, MetricUnit.Milliseconds, max(0, waited))
        if result.outcome is Outcome.SUCCEEDED:
            self._count(resources.METRIC.REPORTS_COMPLETED)
            self._emit(
                resources.METRIC.REPORT_DURATION, MetricUnit.Milliseconds, result.duration_ms
            )
        elif result.outcome is Outcome.FAILED:
            self._count(resources.METRIC.REPORTS_FAILED)
        self._delete(message)

    def _run(self, message: MessageTypeDef, task: TaskRecord, receives: int) -> RunResult | None:
        """The run, in the report's X-Ray segment; None when it raised (handled here)."""
        with self._segments.segment(task) as span:
            try:
                result = self._runner.run(
                    task,
                    heartbeat_hooks=[lambda: self._change_visibility(message, self._visibility)],
                )
            except Exception as err:
                if span is not None:
                    span.fault = True
                self._after_error(message, task, receives, err)
                return None
            finally:
                slots = self._runner.services.slots
                if slots is not None and (uncapped := slots.take_fail_opens()):
                    self._emit(resources.METRIC.SLOTS_FAIL_OPEN, MetricUnit.Count, uncapped)
            if span is not None:
                span.annotations["outcome"] = result.outcome.value
                span.error = result.outcome is Outcome.FAILED
        return result

    def _put_off(self, message: MessageTypeDef, task: TaskRecord) -> None:
        """Its tenant is at its cap: a new message with a longer delay, then this one
        deleted (if the send fails it comes back after the same delay, one receive on)."""
        deferrals, first_ms = attributes_of(message)
        failed = defer(
            [Deferred(message["MessageId"], task, deferrals, first_ms)],
            sqs=self._sqs,
            queue_url=self._queue_url,
            now_ms=int(time.time() * 1000),
        )
        if failed:
            self._change_visibility(message, delay_seconds(deferrals))
            return
        self._delete(message)
        slots = self._runner.services.slots
        if slots is not None and self._metrics is not None:
            count_deferred([slots.tenant_class(task.tenant)], service=self._service)

    def _after_error(
        self, message: MessageTypeDef, task: TaskRecord, receives: int, err: Exception
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
        # Out of retries, or an error no retry can fix (a defect): fail it now, once.
        reason, text = (
            (
                RETRIES_EXHAUSTED,
                f"the report could not be completed after {receives} attempts; submit it again",
            )
            if is_transient_error(err)
            else (WORKER_ERROR, WORKER_ERROR_MESSAGE)
        )
        try:
            self._runner.fail_permanently(task, reason=reason, message=text)
        except Exception:
            log.exception("could not mark %s FAILED; the message stays queued", task.report_id)
            return
        self._count(resources.METRIC.REPORTS_FAILED)
        self._delete(message)

    def _count(self, name: str) -> None:
        self._emit(name, MetricUnit.Count, 1)

    def _emit(self, name: str, unit: MetricUnit, value: float) -> None:
        """One metric, flushed at once: a long-lived process has no invocation end."""
        if self._metrics is None:
            return
        with self._metrics_lock:
            try:
                self._metrics.add_metric(name, unit, value)
                self._metrics.flush_metrics()
            except Exception:
                log.warning("could not emit metric %s", name, exc_info=True)

    # --- the dead-letter queue ----------------------------------------------------------

    def _maybe_drain_dlq(self) -> None:
        now = time.monotonic()
        if now < self._next_drain:
            return
        self._next_drain = now + self._dlq_interval
        try:
            self.drain_dlq()
        except Exception:
            log.warning("draining the DLQ failed; trying again later", exc_info=True)

    def dead_letter_queue_url(self) -> str | None:
        """The DLQ named by the queue's RedrivePolicy (looked up once)."""
        if self._dlq_url is None:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
            policy = attributes.get("RedrivePolicy")
            if not policy:
                return None
            arn = json.loads(policy)["deadLetterTargetArn"]
            _, _, _, _, account, name = arn.split(":", 5)
            self._dlq_url = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
        return self._dlq_url

    def drain_dlq(self) -> int:
        """End FAILED every report whose task is in the DLQ; return how many were ended
        now (reports already terminal, or deleted, count nothing)."""
        dlq_url = self.dead_letter_queue_url()
        if dlq_url is None:
            return 0
        ended = 0
        while not self._stopping.is_set():
            messages = self._sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=self._visibility,
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                hide_for = self._dead_letter(message)
                if hide_for is None:
                    ended += 1
                    hide_for = MAX_VISIBILITY_SECONDS
                self._change_visibility(message, hide_for, queue_url=dlq_url)
        return ended

    def _dead_letter(self, message: MessageTypeDef) -> int | None:
        """None if this call ended the report FAILED; else the seconds to hide the message
        (long when there is nothing to do, a lease when another worker still holds it)."""
        try:
            task = tasks.decode_text(message["Body"])
        except tasks.UndecodableTask:
            return MAX_VISIBILITY_SECONDS  # no report to fail; left for operators
        result = self._runner.fail_permanently(
            task,
            reason=RETRIES_EXHAUSTED,
            message=f"the report could not be completed in {self._max_receives} attempts; "
            "submit it again",
        )
        if result.outcome is Outcome.FAILED:
            log.error("report %s ended FAILED from the DLQ", task.report_id)
            self._count(resources.METRIC.REPORTS_FAILED)
            return None
        current = self._runner.services.store.get(task.report_id)
        if current is not None and not current.terminal and current.lease_until_ms:
            # A live lease (a worker still finishing it): look again once it runs out.
            left = (current.lease_until_ms - time.time() * 1000) / 1000
            return max(1, math.ceil(left) + 1)
        return MAX_VISIBILITY_SECONDS
