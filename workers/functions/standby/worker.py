"""The standby worker's loop: long-poll this region's standby queue (mirrored copies of the
peer region's tasks), decide per task (functions.standby.decide), and run the ones the home
region did not progress with the shared run logic (functions.runner), so the report
records this region as the one that ran it.

A task is taken in two steps: the claim (a conditional write, like every worker's), then a
wait of `margin` seconds and a re-read. A claim the home region made at about the same time
replicates within the margin; last-writer-wins then shows the same winner in both regions,
and the loser stands down before running anything (docs/MULTI_REGION.md).

A message is deleted only once its report is terminal or deleted (has a tombstone). While
the home region still works on it the message is put back with a delay (a fresh copy:
waiting must not use up the receives that send a failing message to the DLQ), so a report
that stalls later -- its region lost mid-run -- is still taken over.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from functions.consumer import QueueConsumer
from functions.process import RECEIVE_COUNT
from functions.runner import Outcome, Runner, is_transient_error
from functions.segments import SegmentSender
from functions.standby.decide import Verdict, decide, is_alive
from functions.store import now_ms
from reportgrid import resources, tasks, tracing
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

RETRY_BACKOFF_CAP_SECONDS: Final = 60


class StandbyWorker(QueueConsumer):
    def __init__(
        self,
        runner: Runner,
        *,
        sqs: SQSClient,
        queue_url: str,
        concurrency: int,
        lease_seconds: float,
        grace_seconds: float,
        margin_seconds: float,
        last_beat: Callable[[str], int | None],
        wait_seconds: int = 20,
        clock: Callable[[], int] = now_ms,
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
        self._grace = grace_seconds
        self._margin = margin_seconds
        self._clock = clock
        self._last_beat = last_beat
        # Each takeover's X-Ray segment, in the report's trace (none without a daemon).
        self._segments = segments or SegmentSender(None, name="reportgrid-standby-worker")
        self.outcomes: dict[str, int] = {}  # what happened to messages (tests, logs)
        self._lock = threading.Lock()

    def run(self, *, stop_grace_seconds: float = 30.0) -> None:
        self._serve(stop_grace_seconds=stop_grace_seconds, thread_name="standby")

    # -- one message -------------------------------------------------------------------

    def handle(self, message: MessageTypeDef) -> str:
        """Process one message; returns what happened (counted in `outcomes`)."""
        try:
            outcome = self._process(message)
        except Exception:
            log.exception("standby message %s failed", message.get("MessageId"))
            outcome = "error"
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcome

    def _process(self, message: MessageTypeDef) -> str:
        try:
            task = tasks.decode_text(message["Body"])
        except tasks.UndecodableTask as err:
            log.error("deleting an undecodable standby message: %s", err)
            self._delete(message)
            return "poison"
        receives = int(message.get("Attributes", {}).get(RECEIVE_COUNT, "1"))
        try:
            snapshot = self._runner.services.store.read(task.report_id)
            beat = self._last_beat(task.home_region)
        except Exception as err:
            return self._back_off(message, task, receives, err)
        if snapshot.deleted:  # the tombstone is final: nothing to run or watch
            self._delete(message)
            return "dropped"
        record = snapshot.record
        now = self._clock()
        decision = decide(
            task,
            record,
            now_ms=now,
            grace_seconds=self._grace,
            margin_seconds=self._margin,
            home_alive=is_alive(beat, now_ms=now, margin_seconds=self._margin),
        )
        if decision.verdict is Verdict.DROP:
            self._delete(message)
            return "dropped"
        if decision.verdict is Verdict.WAIT:
            self._later(message, task, decision.wait_seconds)
            return "waiting"
        tracing.log_step(
            log,
            "takeover",
            task,
            text=f"taking over report {task.report_id} from {task.home_region}",
        )
        with self._segments.segment(task) as span:
            try:
                result = self._runner.run(
                    task,
                    heartbeat_hooks=[lambda: self._change_visibility(message, self._visibility)],
                    after_claim=self._confirm,
                )
            except Exception as err:
                if span is not None:
                    span.fault = True
                return self._back_off(message, task, receives, err)
            if span is not None:
                span.annotations.update(outcome=result.outcome.value, takeover=True)
                span.error = result.outcome is Outcome.FAILED
        if result.outcome is Outcome.BUSY:
            self._later(message, task, result.retry_after_seconds + self._margin)
            return "busy"
        stood_down = result.record is not None and not result.record.terminal
        if result.outcome is Outcome.NOOP and stood_down:
            # Another region's claim won (or took over): keep watching it.
            self._later(message, task, self._visibility + self._margin)
            return "stood-down"
        self._delete(message)
        tracing.log_step(
            log,
            "terminal",
            task,
            outcome=result.outcome.value,
            duration_ms=result.duration_ms,
            time_to_terminal_ms=tracing.time_to_terminal_ms(task),
        )
        return f"ran-{result.outcome.name.lower()}"

    def _confirm(self, claimed: ReportRecord) -> bool:
        """After our claim: wait out the margin, then run only if the claim is still ours
        (a competing claim from the home region has replicated by now, and LWW shows the
        same winner in both regions)."""
        store = self._runner.services.store
        if self._stopping.wait(self._margin):
            store.release(claimed.report_id, owner=claimed.lease_owner or "")
            return False
        current = store.get(claimed.report_id)
        ours = (
            current is not None
            and current.state is State.RUNNING
            and current.lease_owner == claimed.lease_owner
        )
        if not ours:
            log.info("report %s: another region's write won; standing down", claimed.report_id)
        return ours

    # -- queue operations ----------------------------------------------------------------

    def _back_off(
        self, message: MessageTypeDef, task: TaskRecord, receives: int, err: Exception
    ) -> str:
        if is_transient_error(err):
            log.warning("report %s: transient failure on the standby", task.report_id)
        else:
            log.error("report %s: standby run failed", task.report_id, exc_info=err)
        # Redelivered after a backoff; after HEAVY_MAX_RECEIVES the queue's DLQ keeps it.
        self._change_visibility(message, min(2**receives, RETRY_BACKOFF_CAP_SECONDS))
        return "retry"

    def _later(self, message: MessageTypeDef, task: TaskRecord, seconds: float) -> None:
        """Look at the task again in `seconds`: a fresh delayed copy (receive count 0)
        when SQS can delay that long, else a longer visibility timeout."""
        delay = max(1, math.ceil(seconds))
        if delay <= resources.MAX_SQS_DELAY_SECONDS:
            try:
                self._sqs.send_message(
                    QueueUrl=self._queue_url, MessageBody=message["Body"], DelaySeconds=delay
                )
            except (ClientError, BotoCoreError):
                log.warning("could not re-queue %s; keeping the message", task.report_id)
                self._change_visibility(message, delay)
                return
            self._delete(message)
            return
        self._change_visibility(message, delay)

    def count(self, outcome: str) -> int:
        with self._lock:
            return self.outcomes.get(outcome, 0)
