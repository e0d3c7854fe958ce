"""Lambda handler for the Kinesis task stream.

Light reports run here; heavy ones (KindSpec.cost_for the input) are forwarded to the SQS
queue first, in batches. The light ones of the batch then run together
(functions.runner.Runner.run_batch: batched reads, claims and terminal writes in flight
together, one DuckDB database and one heartbeat for all), and each record succeeds or fails
alone (Powertools BatchProcessor, failures reported by sequence number):
- transient trouble (throttling, timeouts, 5xx) fails the record, so Lambda retries it;
- a poison record (undecodable) is counted and skipped, and a bad request ends its report
  FAILED: neither ever blocks the shard;
- a task whose tenant has its max_running reports running (functions/tenant_slots.py)
  is put off to the heavy queue with a delay (functions/deferral.py) and its record
  succeeds, so the shard moves on to the other tenants' tasks at once; the queue worker
  runs it when its tenant has a slot free (it never fails for waiting);
- a report another run still holds (BUSY: typically an invocation that timed out or was
  killed mid-report, whose lease has not run out) is waited for within this invocation's
  time, then taken over; if the lease outlives the invocation the record is retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.clients import client
from functions.deferral import Deferred, count_deferred, defer
from functions.notify import Notifier
from functions.runner import (
    WORKER_ERROR,
    WORKER_ERROR_MESSAGE,
    Outcome,
    Runner,
    RunResult,
    Services,
    is_transient_error,
)
from functions.segments import SegmentSender, Span
from functions.store import store_for
from functions.stream_worker.forward import forward
from functions.tenant_slots import slots_for
from reportgrid import resources, tasks, tracing, validation
from reportgrid.engine.registry import CostClass
from reportgrid.errors import InvalidArgument
from reportgrid.settings import get_settings
from reportgrid.task.v1.task_pb2 import TaskRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

logger = Logger(service=resources.SERVICE_STREAM_WORKER)
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service=resources.SERVICE_STREAM_WORKER)
tracer = Tracer(service=resources.SERVICE_STREAM_WORKER)
processor = BatchProcessor(
    event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False
)
log = logging.getLogger(__name__)


# The per-report segments' name: not the function's own (X-Ray would merge the two nodes).
SEGMENT_NAME = f"{resources.SERVICE_STREAM_WORKER}-report"
# Time kept back from the invocation's remaining time when waiting out another's lease.
_BUSY_MARGIN_SECONDS = 5.0


class RetryRecord(Exception):
    """Fails one record so that Lambda delivers it again."""


@dataclass
class Dependencies:
    runner: Runner
    sqs: SQSClient
    heavy_queue_url: str | None
    # Each light report's segment in its own trace, uploaded once per invocation
    # (functions/segments.py: the invocation's segment belongs to none of the batch's).
    segments: SegmentSender = field(default_factory=lambda: SegmentSender(None, name=SEGMENT_NAME))


_dependencies: Dependencies | None = None


def configure(dependencies: Dependencies | None) -> None:
    """Inject the dependencies (tests point them at the moto server); None resets."""
    global _dependencies  # noqa: PLW0603 - one set of clients per Lambda container
    _dependencies = dependencies


def dependencies() -> Dependencies:
    """Built on first use, once per container; the settings are validated here."""
    global _dependencies  # noqa: PLW0603
    if _dependencies is None:
        settings = get_settings()
        ddb = client("dynamodb", settings)
        services = Services(
            settings=settings,
            store=store_for(settings, ddb),
            s3=client("s3", settings),
            notifier=Notifier(settings.redis_url),
            slots=slots_for(settings, ddb),
        )
        _dependencies = Dependencies(
            runner=Runner(services, owner_prefix=f"lambda:{settings.region}"),
            sqs=client("sqs", settings),
            heavy_queue_url=settings.heavy_queue_url,
            segments=SegmentSender.for_lambda(
                name=SEGMENT_NAME, api=lambda: client("xray", settings)
            ),
        )
    return _dependencies


def _decode(record: KinesisStreamRecord) -> TaskRecord:
    return tasks.decode(record.kinesis.data_as_bytes())


def _is_heavy(task: TaskRecord, deps: Dependencies) -> bool:
    registry = deps.runner.services.registry
    if task.request.kind not in registry:
        return False  # the run fails it as INVALID_PARAMS
    source = task.request.input.WhichOneof("source") if task.request.HasField("input") else None
    return registry.get(task.request.kind).cost_for(source) is CostClass.HEAVY


def _heavy_tasks(event: dict[str, Any], deps: Dependencies) -> dict[str, TaskRecord]:
    """Valid heavy tasks of the batch by sequence number (invalid ones run here and fail)."""
    heavy: dict[str, TaskRecord] = {}
    for raw in event.get("Records", []):
        record = KinesisStreamRecord(raw)
        try:
            task = _decode(record)
            if _is_heavy(task, deps):
                services = deps.runner.services
                validation.validate_submit(
                    task.request, services.registry, tenant=task.tenant, inputs=services.inputs
                )
                heavy[record.kinesis.sequence_number] = task
        except (tasks.UndecodableTask, InvalidArgument):
            continue
    return heavy


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = dependencies()
    try:
        return _handle(event, context, deps)
    finally:
        # Before the invocation ends: Lambda freezes the process between invocations.
        deps.segments.flush()


def _handle(event: dict[str, Any], context: LambdaContext, deps: Dependencies) -> dict[str, Any]:
    heavy = _heavy_tasks(event, deps)
    forward_failed: set[str] = set()
    if heavy:
        if not deps.heavy_queue_url:
            forward_failed = set(heavy)
            logger.error("heavy tasks arrived but no heavy queue is configured")
        else:
            forward_failed = forward(
                heavy.items(),
                store=deps.runner.services.store,
                sqs=deps.sqs,
                queue_url=deps.heavy_queue_url,
            )
            metrics.add_metric("TasksForwarded", MetricUnit.Count, len(heavy) - len(forward_failed))
        for seq, task in heavy.items():
            if seq not in forward_failed:
                logger.info("forwarded", extra=tracing.report_fields(task, "forwarded"))
    started_s = time.time()
    light = _run_light_batch(event, heavy, deps)
    deferred = {
        seq: found[0]
        for seq, found in light.items()
        if not isinstance(found, tasks.UndecodableTask)
        and isinstance(found[1], RunResult)
        and found[1].outcome is Outcome.DEFERRED
    }
    defer_failed = _put_off(deferred, deps)
    slots = deps.runner.services.slots
    if slots is not None and (uncapped := slots.take_fail_opens()):
        metrics.add_metric(resources.METRIC.SLOTS_FAIL_OPEN, MetricUnit.Count, uncapped)

    def record_handler(record: KinesisStreamRecord) -> str:
        seq = record.kinesis.sequence_number
        if seq in heavy:
            if seq in forward_failed:
                raise RetryRecord(f"forwarding {heavy[seq].report_id} failed")
            return "forwarded"
        if seq in deferred:
            if seq in defer_failed:
                raise RetryRecord(f"putting off {deferred[seq].report_id} failed")
            return Outcome.DEFERRED.value
        return _light_outcome(
            seq,
            light[seq],
            deps,
            remaining=context.get_remaining_time_in_millis,
            started_s=started_s,
            request_id=context.aws_request_id,
        )

    response: dict[str, Any] = dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
    return response


def _put_off(deferred: dict[str, TaskRecord], deps: Dependencies) -> set[str]:
    """Send the tasks over their tenants' caps to the heavy queue with a delay; return the
    sequence numbers whose send failed (their records are retried: never lost)."""
    if not deferred:
        return set()
    if not deps.heavy_queue_url:
        logger.error("tasks to put off but no heavy queue is configured")
        return set(deferred)
    now = int(time.time() * 1000)
    failed = defer(
        (Deferred(seq, task) for seq, task in deferred.items()),
        sqs=deps.sqs,
        queue_url=deps.heavy_queue_url,
        now_ms=now,
    )
    slots = deps.runner.services.slots
    if slots is not None:
        count_deferred(
            (slots.tenant_class(t.tenant) for s, t in deferred.items() if s not in failed),
            service=resources.SERVICE_STREAM_WORKER,
        )
    return failed


# What the batch run left for one light record: its task and outcome, or why it has none.
_Light = tuple[TaskRecord, RunResult | BaseException] | tasks.UndecodableTask


def _run_light_batch(
    event: dict[str, Any], heavy: dict[str, TaskRecord], deps: Dependencies
) -> dict[str, _Light]:
    """Decode the light records and run their tasks together (Runner.run_batch: batched
    reads, claims and terminal writes in flight together, one heartbeat); the record
    handler then reports each record's outcome alone."""
    decoded: dict[str, _Light] = {}
    todo: list[tuple[str, TaskRecord]] = []
    for raw in event.get("Records", []):
        record = KinesisStreamRecord(raw)
        seq = record.kinesis.sequence_number
        if seq in heavy:
            continue
        try:
            todo.append((seq, _decode(record)))
        except tasks.UndecodableTask as err:
            decoded[seq] = err
    for _, task in todo:
        logger.info("picked_up", extra=tracing.report_fields(task, "picked_up"))
    outcomes = deps.runner.run_batch([task for _, task in todo]) if todo else []
    for (seq, task), outcome in zip(todo, outcomes, strict=True):
        decoded[seq] = (task, outcome)
    return decoded


def _light_outcome(
    seq: str,
    light: _Light,
    deps: Dependencies,
    *,
    remaining: Callable[[], int],
    started_s: float,
    request_id: str = "",
) -> str:
    if isinstance(light, tasks.UndecodableTask):
        metrics.add_metric(resources.METRIC.POISON_RECORDS, MetricUnit.Count, 1)
        logger.error(
            "skipping an undecodable task record",
            extra={"sequence_number": seq, "reason": str(light)},
        )
        return "poison"
    task, outcome = light
    span = deps.segments.start(task, start_s=started_s)
    try:
        ended = _ended_light(seq, task, outcome, deps, remaining=remaining, span=span)
    except BaseException:
        if span is not None:
            span.fault = True
        raise
    finally:
        if span is not None:
            span.annotations["lambda_request_id"] = request_id
            deps.segments.send(span)
    return ended


def _ended_light(
    seq: str,
    task: TaskRecord,
    outcome: RunResult | BaseException,
    deps: Dependencies,
    *,
    remaining: Callable[[], int],
    span: Span | None,
) -> str:
    logger.append_keys(report_id=task.report_id)
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome.outcome is Outcome.BUSY:
            outcome = _run_when_free(task, deps, remaining, first=outcome)
        if outcome.outcome is Outcome.DEFERRED and _put_off({seq: task}, deps):
            raise RetryRecord(f"putting off {task.report_id} failed")
    except RetryRecord:
        raise  # the holder's lease outlives this invocation: Lambda delivers it again
    except Exception as err:
        if is_transient_error(err):
            raise RetryRecord(f"transient failure running {task.report_id}") from err
        # A defect, not the user's doing: end the report rather than block the shard.
        logger.exception("report run failed unexpectedly")
        metrics.add_metric(resources.METRIC.REPORTS_FAILED, MetricUnit.Count, 1)
        deps.runner.fail_permanently(task, reason=WORKER_ERROR, message=WORKER_ERROR_MESSAGE)
        _record_time_to_terminal(task)
        if span is not None:
            span.fault = True
        return "failed"
    finally:
        logger.remove_keys(["report_id"])
    _record_metrics(outcome.outcome, outcome.duration_ms)
    event = "terminal" if outcome.outcome in _TERMINAL else "ran"
    fields = tracing.report_fields(
        task, event, outcome=outcome.outcome.value, duration_ms=outcome.duration_ms
    )
    if event == "terminal":  # the slowest-reports query reads it
        fields["time_to_terminal_ms"] = tracing.time_to_terminal_ms(task)
    logger.info(event, extra=fields)
    if span is not None:
        span.annotations["outcome"] = outcome.outcome.value
        span.error = outcome.outcome is Outcome.FAILED
    if outcome.outcome in _TERMINAL:
        _record_time_to_terminal(task)
    return outcome.outcome.value


def _run_when_free(
    task: TaskRecord, deps: Dependencies, remaining: Callable[[], int], *, first: RunResult
) -> RunResult:
    """After a BUSY run: while another run holds a live lease, wait for it to run out (it
    is renewed by a live holder, so only a dead one's lease ends) as long as this
    invocation has the time, then run the task again; else retry the record later."""
    result = first
    while True:
        if result.outcome is not Outcome.BUSY:
            return result
        wait = result.retry_after_seconds + 0.1
        if wait > remaining() / 1000 - _BUSY_MARGIN_SECONDS:
            raise RetryRecord(f"{task.report_id} is held by another run")
        time.sleep(wait)
        result = deps.runner.run(task)


_TERMINAL = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED})


def _record_time_to_terminal(task: TaskRecord) -> None:
    """Acceptance at the edge to the terminal write: the light time-to-terminal SLO reads
    it (cdk/slo.py)."""
    waited = int(time.time() * 1000) - task.accept_time.ToMilliseconds()
    metrics.add_metric(resources.METRIC.TIME_TO_TERMINAL, MetricUnit.Milliseconds, max(0, waited))


def _record_metrics(outcome: Outcome, duration_ms: int) -> None:
    if outcome is Outcome.SUCCEEDED:
        metrics.add_metric(resources.METRIC.REPORTS_COMPLETED, MetricUnit.Count, 1)
        metrics.add_metric(resources.METRIC.REPORT_DURATION, MetricUnit.Milliseconds, duration_ms)
    elif outcome is Outcome.FAILED:
        metrics.add_metric(resources.METRIC.REPORTS_FAILED, MetricUnit.Count, 1)
