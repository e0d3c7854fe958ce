"""Lambda handler of the scheduler: one run per minute (docs/SCHEDULES.md).

EventBridge Scheduler invokes it with the target input `{"scheduled_time":
"<aws.scheduler.scheduled-time>"}` (cdk/constructs/scheduler.py), which Scheduler fills
with the minute it fires for, e.g. `2022-03-22T18:59:43Z` (docs.aws.amazon.com/scheduler/
latest/UserGuide/managing-schedule-context-attributes.html). That time is the run's "now",
so the local scheduler process drives it from a test clock; an event without it (a manual
invocation) runs at the wall clock. An event with a malformed time fires nothing: it is
logged as an error and counted (Failed, InvalidEvents), and the handler returns normally,
since a retry of the same event could not do better (the next minute's run catches up).

The work is functions/scheduler/fire.py's; this module wires it from the settings and
turns the run's outcomes into metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.batch import Wired
from functions.clients import client
from functions.scheduler.fire import Firer, Outcome, RunSummary
from reportgrid import resources
from reportgrid.schedules.firing import BadEvent, run_time
from reportgrid.settings import get_settings
from reportgrid.validation import InputPolicy

logger = Logger(service=resources.SERVICE_SCHEDULER)
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service=resources.SERVICE_SCHEDULER)
tracer = Tracer(service=resources.SERVICE_SCHEDULER)

FIRED: Final = "Fired"
DEDUPLICATED: Final = "Deduplicated"
ALREADY_FIRED: Final = "AlreadyFired"
SKIPPED: Final = "Skipped"
DROPPED: Final = "Dropped"
DEFERRED: Final = "Deferred"
INVALID_EVENTS: Final = "InvalidEvents"
FIRE_LAG: Final = resources.METRIC.SCHEDULE_FIRE_LAG
FAILED: Final = resources.METRIC.SCHEDULE_FIRES_FAILED
# Which outcomes each count metric adds up (fire.Outcome).
_COUNTED: Final = {
    FIRED: (Outcome.FIRED,),
    DEDUPLICATED: (Outcome.DEDUPLICATED,),
    ALREADY_FIRED: (Outcome.ALREADY_FIRED,),
    SKIPPED: (Outcome.SKIPPED, Outcome.TENANT_DISABLED),
    DEFERRED: (Outcome.DEFERRED,),
    # Could not be submitted: a call failed (retried next minute) or the template is no
    # longer valid (recorded as skipped, reason in the log).
    FAILED: (Outcome.FAILED, Outcome.INVALID),
}


@dataclass
class Dependencies:
    firer: Firer


def _build() -> Dependencies:
    settings = get_settings()
    from reportgrid.engine.kinds import REGISTRY  # noqa: PLC0415 -- the engine's, loaded once

    return Dependencies(
        firer=Firer(
            dynamodb=client("dynamodb", settings),
            kinesis=client("kinesis", settings),
            table_name=settings.table_name,
            stream_name=settings.task_stream_name,
            region=settings.region,
            codec=settings.id_codec(),
            registry=REGISTRY,
            inputs=InputPolicy.of(
                settings.input_buckets, loopback_webhooks=settings.webhook_allow_loopback
            ),
        )
    )


dependencies = Wired(_build)
configure = dependencies.configure


def record_metrics(summary: RunSummary) -> None:
    for name, outcomes in _COUNTED.items():
        metrics.add_metric(name, MetricUnit.Count, sum(summary.outcomes[o] for o in outcomes))
    metrics.add_metric(DROPPED, MetricUnit.Count, summary.dropped)
    if summary.max_lag_seconds is not None:
        metrics.add_metric(FIRE_LAG, MetricUnit.Seconds, summary.max_lag_seconds)


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    firer = dependencies().firer
    try:
        now = run_time(event, wall_clock=datetime.now(UTC))
    except BadEvent as err:
        logger.error("scheduler event refused: nothing fired", extra={"error": str(err)})
        metrics.add_metric(INVALID_EVENTS, MetricUnit.Count, 1)
        metrics.add_metric(FAILED, MetricUnit.Count, 1)
        return {"error": str(err)}
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    summary = firer.run(now, remaining_ms=remaining)
    record_metrics(summary)
    result = summary.to_json()
    logger.info("scheduler run", extra=result)
    return result
