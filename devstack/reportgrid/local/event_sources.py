"""`python -m reportgrid.local.event_sources`: the Lambda service of one local region. Every
Python function of the region's synthesized stack that has an event-source mapping runs from
its asset (reportgrid/local/lambda_host.py), fed by a local event source configured from
the mapping: the Kinesis runner for a stream, the DynamoDB-stream source for a table's stream
(reportgrid/local/dynamodb_stream_source.py), the SQS event source for a queue. A function
that an EventBridge Scheduler schedule of the stack invokes runs on that schedule, by a clock
tests can set (reportgrid/local/scheduler_source.py).

Per function, invocations are serialized (one execution environment; Lambda's
ParallelizationFactor is read but runs as 1 here, see docs/LOCAL_REGION.md). SIGTERM/SIGINT
stop polling after the invocations in flight.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from reportgrid import resources
from reportgrid.local.bootstrap import client
from reportgrid.local.deployed import (
    DYNAMODB_STREAM,
    DeploymentError,
    EventSourceMapping,
    LambdaFunction,
    ScheduledInvocation,
)
from reportgrid.local.dynamodb_stream_source import DynamoStreamRunner
from reportgrid.local.kinesis_runner import Handler, KinesisRunner, MappingConfig
from reportgrid.local.lambda_host import LambdaHost
from reportgrid.local.launch import LocalDeployment, parse_tuning, prepare
from reportgrid.local.scheduler_source import ScheduleSource, role_denial
from reportgrid.local.sqs_source import SqsEventSource

log = logging.getLogger("reportgrid.local.event_sources")
E = resources.ENV

MIRROR_HANDLER: Final = "functions.mirror.handler.handler"
# A stream's retention (the task stream keeps 24 h): MaximumRecordAgeInSeconds -1 means it.
STREAM_RETENTION_SECONDS: Final = 24 * 3600
# MaximumRetryAttempts -1 retries until the record expires; locally a large bound.
UNBOUNDED_RETRIES: Final = 10_000
# Locally a failed SQS message comes back after this long (in AWS: the queue's visibility
# timeout, which the template sets for the function's timeout).
LOCAL_VISIBILITY_SECONDS: Final = 10


def mapping_config(mapping: EventSourceMapping, function: LambdaFunction) -> MappingConfig:
    """The Kinesis runner's settings, from the template's mapping and function."""
    return MappingConfig(
        batch_size=mapping.batch_size,
        batching_window_seconds=mapping.batching_window_seconds,
        starting_position="LATEST" if mapping.starting_position == "LATEST" else "TRIM_HORIZON",
        max_retry_attempts=mapping.max_retry_attempts
        if mapping.max_retry_attempts >= 0
        else UNBOUNDED_RETRIES,
        max_record_age_seconds=mapping.max_record_age_seconds
        if mapping.max_record_age_seconds >= 0
        else STREAM_RETENTION_SECONDS,
        bisect_batch_on_function_error=mapping.bisect_batch_on_function_error,
        report_batch_item_failures=mapping.report_batch_item_failures,
        function_timeout_seconds=function.timeout_seconds,
        memory_limit_in_mb=function.memory_mib,
    )


def checkpoint_dir(state_dir: Path, service: str) -> Path:
    """Where a Kinesis consumer keeps its shard checkpoints, by its service name (the
    template's POWERTOOLS_SERVICE_NAME), so a restarted region resumes its backlog."""
    return state_dir / service


class Source:
    """A started event source: something to stop and threads to wait for."""

    def __init__(self, stop: Callable[[], None], threads: list[threading.Thread]) -> None:
        self.stop = stop
        self.threads = threads


def kinesis_source(
    deployment: LocalDeployment,
    host: LambdaHost,
    *,
    state_dir: Path,
    invoke: Handler | None = None,
) -> KinesisRunner:
    """The Kinesis event source of the host's function, configured from its mapping (not
    started). It invokes the host, or `invoke` (a wrapper around it) when given."""
    function = host.function
    mapping = deployment.mapping(function)
    return KinesisRunner(
        invoke or host,
        stream_name=deployment.source_url(mapping),
        region=deployment.region,
        endpoint_url=deployment.endpoint_url,
        config=mapping_config(mapping, function),
        state_dir=checkpoint_dir(state_dir, function.service),
        function_name=function.logical_id,
        failure_queue_url=deployment.on_failure_url(mapping),
    )


def dynamodb_stream_source(
    deployment: LocalDeployment,
    host: LambdaHost,
    *,
    state_dir: Path,
    invoke: Handler | None = None,
) -> DynamoStreamRunner:
    """The DynamoDB-stream event source of the host's function, configured from its
    mapping, filter included (not started)."""
    function = host.function
    mapping = deployment.mapping(function)
    if mapping.table_name is None:
        raise DeploymentError(f"{function.logical_id}: its stream mapping names no table")
    return DynamoStreamRunner(
        invoke or host,
        table_name=mapping.table_name,
        region=deployment.region,
        endpoint_url=deployment.endpoint_url,
        config=mapping_config(mapping, function),
        state_dir=checkpoint_dir(state_dir, function.service),
        function_name=function.logical_id,
        filter_patterns=mapping.filter_patterns,
        failure_queue_url=deployment.on_failure_url(mapping),
    )


def sqs_source(
    deployment: LocalDeployment, host: LambdaHost, *, wait_seconds: int = 1
) -> SqsEventSource:
    """The SQS event source of the host's function, configured from its mapping (not
    started; `wait_seconds` is each receive's long poll)."""
    function = host.function
    mapping = deployment.mapping(function)
    return SqsEventSource(
        host,
        sqs=client("sqs", deployment.region, deployment.endpoint_url),
        queue_url=deployment.source_url(mapping),
        region=deployment.region,
        function_name=function.logical_id,
        batch_size=mapping.batch_size,
        wait_seconds=wait_seconds,
        visibility_timeout=LOCAL_VISIBILITY_SECONDS,
        function_timeout_seconds=function.timeout_seconds,
    )


def start_source(deployment: LocalDeployment, host: LambdaHost, *, state_dir: Path) -> Source:
    """Start the event source the host's function is mapped to."""
    function = host.function
    source_type = deployment.mapping(function).source_type
    if source_type == "AWS::Kinesis::Stream":
        runner = kinesis_source(deployment, host, state_dir=state_dir)
        return Source(runner.stop, runner.start())
    if source_type == DYNAMODB_STREAM:
        stream = dynamodb_stream_source(deployment, host, state_dir=state_dir)
        return Source(stream.stop, stream.start())
    if source_type == "AWS::SQS::Queue":
        queue = sqs_source(deployment, host)
        thread = threading.Thread(target=queue.run, name=function.logical_id, daemon=True)
        thread.start()
        return Source(queue.stop, [thread])
    raise DeploymentError(f"{function.logical_id}: no local source {source_type}")


def start_schedule(
    deployment: LocalDeployment,
    host: LambdaHost,
    schedule: ScheduledInvocation,
    *,
    clock_file: Path | None,
) -> Source:
    """Start invoking the host's function on the schedule, as EventBridge Scheduler would
    with the schedule's execution role (judged on the template's policies)."""
    denied = (
        role_denial(
            deployment.assembly,
            schedule,
            region=deployment.region,
            physical=deployment.physical(),
        )
        if deployment.enforce_iam
        else None
    )
    source = ScheduleSource(
        host.invoke, schedule, region=deployment.region, clock_file=clock_file, denied=denied
    )
    thread = threading.Thread(target=source.run, name=host.function.logical_id, daemon=True)
    thread.start()
    return Source(source.stop, [thread])


def start_sources(
    deployment: LocalDeployment,
    *,
    state_dir: Path,
    log_dir: Path,
    skip: Sequence[str] = (),
    tuning: dict[str, str] | None = None,
    clock_file: Path | None = None,
) -> tuple[list[Source], list[LambdaHost]]:
    """Start an event source for every mapped Python function not in `skip` (handlers),
    and a schedule source for every scheduled one (by the clock in `clock_file`, else the
    wall clock), each with `tuning` (launch.TUNING_OVERRIDES) on top of its template
    environment."""
    template = deployment.template
    sources: list[Source] = []
    hosts: list[LambdaHost] = []
    mapped = {m.function for m in template.mappings()}
    scheduled = {s.function: s for s in template.schedules() if s.enabled}
    for function in template.functions().values():
        if function.handler in skip:
            continue
        if function.logical_id in scheduled and function.logical_id not in mapped:
            host = deployment.lambda_host(function, log_dir, tuning)
            hosts.append(host)
            schedule = scheduled[function.logical_id]
            sources.append(start_schedule(deployment, host, schedule, clock_file=clock_file))
            log.info("%s <- %s (%s)", function.handler, schedule.name, schedule.expression)
            continue
        if function.logical_id not in mapped:
            # Invoked by a schedule or by hand, not by an event source (the canary).
            log.info("%s has no event-source mapping; not started", function.handler)
            continue
        mapping = deployment.mapping(function)
        host = deployment.lambda_host(function, log_dir, tuning)
        hosts.append(host)
        sources.append(start_source(deployment, host, state_dir=state_dir))
        log.info("%s <- %s (%s)", function.handler, mapping.source, mapping.source_type)
    return sources, hosts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--assembly", type=Path, required=True, help="the synthesized cdk.out")
    parser.add_argument("--region", required=True)
    parser.add_argument("--endpoint-url", required=True, help="the moto server")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument(
        "--without-peer",
        action="store_true",
        help="the peer region is not running here: do not run the task mirror",
    )
    parser.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of launch.TUNING_OVERRIDES for every function",
    )
    parser.add_argument(
        "--clock-file",
        type=Path,
        default=None,
        help="the scheduled functions' clock: the time it holds, else the wall clock",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # The values of the secrets the functions read (this process's own environment, never
    # the functions': they fetch them from the local Secrets Manager, as in AWS).
    missing = [name for name in (E.REDIS_URL, E.ID_SECRETS) if not os.environ.get(name)]
    if missing:
        parser.error(f"set {', '.join(missing)} (the supervisor does)")
    try:
        deployment = prepare(
            args.assembly,
            args.region,
            endpoint_url=args.endpoint_url,
            images={},
            redis_url=os.environ[E.REDIS_URL],
            id_secrets=os.environ[E.ID_SECRETS],
        )
        sources, hosts = start_sources(
            deployment,
            state_dir=args.state_dir,
            log_dir=args.log_dir,
            skip=(MIRROR_HANDLER,) if args.without_peer else (),
            tuning=parse_tuning(args.tune),
            clock_file=args.clock_file,
        )
    except DeploymentError as error:
        log.error("cannot start the region's functions: %s", error)
        return 2

    def stop_all(*_: object) -> None:
        for source in sources:
            source.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_all)
    threads = [t for s in sources for t in s.threads]
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)
    for host in hosts:
        host.close()
    log.info("stopped; %d cold start(s)", sum(h.cold_starts for h in hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
