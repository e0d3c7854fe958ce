"""The workers: the processes that run reports (the stream worker Lambda, the heavy-report
queue worker, the standby worker) with the input reader role they assume per tenant, and
the stream-failure drain. Each principal is granted what its code path uses
(workers/functions/)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk.config import DeployConfig, default_max_running
from cdk.constructs.input_reader import InputReader
from cdk.constructs.monitoring import FIVE_MINUTES, ONE_MINUTE, AlarmSpec, Signals, custom_metric
from cdk.constructs.nag import arn_finding, suppress
from cdk.constructs.queue_worker import STANDBY_COMMAND, STANDBY_SERVICE, QueueWorker
from cdk.constructs.service_image import ServiceImage
from cdk.constructs.stream_failure_drain import StreamFailureDrain
from cdk.constructs.stream_worker import StreamWorker
from cdk.stacks.region.storage import RegionalStorage
from reportgrid import resources as r

E = r.ENV
# With guarded rollouts: the share of the queue worker's reports that fail, over at least
# this many reports a minute, above FAILURE_RATE_LIMIT_PERCENT for 3 minutes fails a
# deployment of it. A rate, not a count: the tenants' own failures (bad input) are a small
# share, while a broken worker fails nearly everything.
FAILURE_RATE_MIN_REPORTS = 5
FAILURE_RATE_LIMIT_PERCENT = 50


class Workers:
    """Exposes `stream_worker`, `queue_worker`, `standby_worker`, `input_reader` (None
    without input buckets), `failure_drain` and their `signals`."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeployConfig,
        storage: RegionalStorage,
        cluster: ecs.ICluster,
        vpc: ec2.IVpc,
        code: lambda_.Code,
        project_dir: Path,
    ) -> None:
        capacity = config.capacity
        ingest = storage.ingest
        image = ServiceImage(scope, "WorkerImage", directory=project_dir, target="worker").image
        self.stream_worker = StreamWorker(
            scope,
            "StreamWorker",
            code=code,
            stream=ingest.stream,
            failure_queue=ingest.failure_queue,
            vpc=vpc,
            live_alias=config.guarded_rollouts,
            environment={
                **storage.environment,
                E.DEFAULT_MAX_RUNNING: str(default_max_running(capacity)),
                # The Lambda has no ECS-style secret injection: it reads these at cold start.
                E.ID_SECRETS_ARN: storage.id_secret.secret_arn,
                E.REDIS_URL_ARN: storage.cache.url_secret.secret_arn,
            },
            capacity=capacity,
        )
        self.queue_worker = QueueWorker(
            scope,
            "QueueWorker",
            cluster=cluster,
            image=image,
            queue=ingest.heavy_queue,
            environment={
                **storage.environment,
                E.DEFAULT_MAX_RUNNING: str(default_max_running(capacity)),
            },
            secrets=storage.container_secrets,
            capacity=capacity,
        )
        # Runs the peer's mirrored tasks that the peer has not progressed; always at least
        # one task, because it also writes this region's heartbeat (which tells the peer's
        # standby that this region is alive).
        self.standby_worker = QueueWorker(
            scope,
            "StandbyWorker",
            cluster=cluster,
            image=image,
            queue=ingest.standby_queue,
            environment={
                **storage.environment,
                E.WORKER_LEASE_SECONDS: str(r.WORKER_LEASE_SECONDS),
                E.MIRROR_GRACE_SECONDS: str(config.mirror_grace_seconds),
                E.STANDBY_MARGIN_SECONDS: f"{config.standby_margin_seconds:g}",
            },
            secrets=storage.container_secrets,
            capacity=capacity,
            command=STANDBY_COMMAND,
            service_name=STANDBY_SERVICE,
            container_name="standby",
            min_tasks=capacity.standby_min_tasks,
            max_tasks=capacity.standby_max_tasks,
        )
        self.failure_drain = StreamFailureDrain(
            scope,
            "StreamFailureDrain",
            code=code,
            failure_queue=ingest.failure_queue,
            environment={
                **storage.lambda_environment,
                E.TABLE_NAME: r.TABLE_NAME,
                E.TASK_STREAM_NAME: ingest.stream.stream_name,
                E.HEAVY_QUEUE_URL: ingest.heavy_queue.queue_url,
            },
        )
        self.input_reader = self._grant_report_runners(scope, storage, config.input_buckets)
        self._grant_drain(storage)
        self.signals = self._signals(storage, failure_rate_alarm=config.guarded_rollouts)

    def _grant_report_runners(
        self, scope: Construct, storage: RegionalStorage, input_buckets: tuple[str, ...]
    ) -> InputReader | None:
        """What every process that runs reports shares: the table, the results, the cache,
        and the inputs only as the task's tenant, through the input reader role
        (cdk/constructs/input_reader.py): the worker roles themselves get nothing on the
        input buckets (docs/SECURITY.md, "Tenant boundary")."""
        ingest = storage.ingest
        function = self.stream_worker.function
        heavy = self.queue_worker.task_role
        standby = self.standby_worker.task_role
        runners: tuple[iam.IGrantable, ...] = (function, heavy, standby)
        for runner in runners:
            storage.table.grant_read_write_data(runner)
        # (the event source grants the stream worker its stream reads and the sends of
        # given-up batches to the failure queue)
        # Heavy kinds are forwarded, and tasks over their tenant's max_running put off
        # (functions/deferral.py), to the heavy queue; the heavy worker puts them off again
        # (a new delayed message: SendMessage).
        ingest.heavy_queue.grant_send_messages(function)
        ingest.heavy_queue.grant_consume_messages(heavy)
        ingest.heavy_queue.grant_send_messages(heavy)
        # The heavy worker drains its DLQ (functions/queue_worker/worker.py drain_dlq:
        # GetQueueUrl, ReceiveMessage, ChangeMessageVisibility), ending those reports FAILED.
        # The standby worker drains no DLQ.
        ingest.heavy_dlq.grant_consume_messages(heavy)
        # The standby receives, deletes, extends and re-queues (delays) mirrored tasks.
        ingest.standby_queue.grant_consume_messages(standby)
        ingest.standby_queue.grant_send_messages(standby)
        for runner in runners:
            storage.results.bucket.grant_read_write(runner)
        reader = None
        if input_buckets:
            reader = InputReader(scope, "InputReader", buckets=input_buckets, readers=runners)
            # Tell every process that runs reports which role reads inputs.
            function.add_environment(E.INPUT_READER_ROLE_ARN, reader.role.role_arn)
            for worker in (self.queue_worker, self.standby_worker):
                worker.container.add_environment(E.INPUT_READER_ROLE_ARN, reader.role.role_arn)
        # The containers get the secrets from ECS; the Lambda reads them by ARN.
        storage.id_secret.grant_read(function)
        storage.cache.url_secret.grant_read(function)
        for connections in (self.queue_worker.service, self.standby_worker.service, function):
            # Publishes report state changes (the Watch stream) and refreshes cached reports.
            storage.cache.connections.allow_default_port_from(connections)
        for role in (heavy, standby, cast(iam.IRole, function.role)):
            suppress(
                role,
                "AwsSolutions-IAM5",
                "CDK grant helpers scoped to this region's reports table (its index ARNs, "
                "index/*) and results bucket (its objects, bucket/*, with the Get*/List*/"
                "Abort*/DeleteObject* action groups of grant_read_write). The workers write "
                "and overwrite results; they read no input themselves (the input reader role "
                "does, per tenant).",
                findings=[
                    storage.table_indexes_finding,
                    arn_finding(storage.results.bucket, "/*"),
                    "Action::s3:GetBucket*",
                    "Action::s3:GetObject*",
                    "Action::s3:List*",
                    "Action::s3:Abort*",
                    "Action::s3:DeleteObject*",
                ],
            )
        return reader

    def _grant_drain(self, storage: RegionalStorage) -> None:
        """The drain reads given-up batches back from the stream (shard + sequence range),
        re-drives their tasks through the heavy queue and marks or updates their reports
        (functions/stream_failures; the event source grants the failure queue's reads)."""
        ingest = storage.ingest
        function = self.failure_drain.function
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "kinesis:DescribeStream",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                ],
                resources=[ingest.stream.stream_arn],
            )
        )
        ingest.heavy_queue.grant_send_messages(function)
        storage.table.grant_read_write_data(function)
        storage.id_secret.grant_read(function)
        suppress(
            cast(iam.IRole, function.role),
            "AwsSolutions-IAM5",
            "CDK grant_read_write_data on this region's reports table: its index ARNs "
            "(index/*). The drain marks or re-drives reports whose batches were given up.",
            findings=[storage.table_indexes_finding],
        )

    def _signals(self, storage: RegionalStorage, *, failure_rate_alarm: bool) -> Signals:
        ingest = storage.ingest
        function = self.stream_worker.function
        drain = self.failure_drain.function
        iterator_age = function.metric("IteratorAge", statistic="Maximum", period=ONE_MINUTE)
        oldest = ingest.heavy_queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=ONE_MINUTE
        )
        standby_oldest = ingest.standby_queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=ONE_MINUTE
        )
        stream_failures = ingest.failure_queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=ONE_MINUTE
        )
        # The standby worker writes the region's heartbeat item; with no standby task
        # running the peer presumes this region lost and takes its unstarted reports.
        standby_tasks = cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": self.standby_worker.service.cluster.cluster_name,
                "ServiceName": self.standby_worker.service.service_name,
            },
            statistic="Minimum",
            period=ONE_MINUTE,
        )
        runners = (r.SERVICE_STREAM_WORKER, r.SERVICE_QUEUE_WORKER)
        fail_open = cw.MathExpression(
            expression=" + ".join(f"FILL(f{i}, 0)" for i in range(len(runners))),
            using_metrics={
                f"f{i}": custom_metric(r.METRIC.SLOTS_FAIL_OPEN, s) for i, s in enumerate(runners)
            },
            label="slot checks run uncapped (cache down)",
            period=ONE_MINUTE,
        )
        return Signals(
            alarms=[
                AlarmSpec(
                    "StreamIteratorAge",
                    iterator_age,
                    60_000,
                    5,
                    "stream worker falls behind (>60 s)",
                    region_unhealthy=True,
                ),
                AlarmSpec(
                    "StreamWorkerErrors",
                    function.metric_errors(period=FIVE_MINUTES),
                    10,
                    1,
                    "stream worker invocations failing",
                ),
                AlarmSpec(
                    "HeavyQueueOldest", oldest, 900, 5, "heavy reports waiting over 15 minutes"
                ),
                # Any message: a stream consumer gave up on a batch. The drain re-drives it,
                # but it means records were retried to exhaustion (poison, or a long outage).
                AlarmSpec(
                    "StreamFailures",
                    stream_failures,
                    0,
                    1,
                    "a stream consumer gave up on a batch (stream-failure queue not empty)",
                ),
                AlarmSpec(
                    "StreamFailureDrainErrors",
                    drain.metric_errors(period=FIVE_MINUTES),
                    0,
                    1,
                    "the stream-failure drain is failing",
                ),
                # Acknowledged reports whose task records left the stream before the drain
                # re-drove them: lost, their clients must submit again (runbook).
                AlarmSpec(
                    "ReportsLost",
                    custom_metric(r.METRIC.STREAM_RECORDS_EXPIRED, r.SERVICE_STREAM_FAILURES),
                    0,
                    1,
                    "acknowledged reports lost: their task records expired from the stream "
                    "before the stream-failure drain re-drove them",
                ),
                # Only the edge writes task records: an undecodable one is a defect (or a
                # writer that is not ours), skipped so that the shard moves on.
                AlarmSpec(
                    "PoisonTasks",
                    cw.MathExpression(
                        expression="FILL(worker, 0) + FILL(drain, 0)",
                        using_metrics={
                            "worker": custom_metric(
                                r.METRIC.POISON_RECORDS, r.SERVICE_STREAM_WORKER
                            ),
                            "drain": custom_metric(
                                r.METRIC.POISON_RECORDS, r.SERVICE_STREAM_FAILURES
                            ),
                        },
                        period=ONE_MINUTE,
                    ),
                    0,
                    1,
                    "undecodable task records skipped by the stream worker or the drain",
                ),
                # Mirrored tasks are delayed by the grace period and usually dropped right
                # after it (the home region ran them); a standby stuck for 15 minutes is not
                # working.
                AlarmSpec(
                    "StandbyQueueOldest",
                    standby_oldest,
                    900,
                    5,
                    "mirrored tasks waiting in the standby queue over 15 minutes",
                ),
                AlarmSpec(
                    "StandbyHeartbeat",
                    standby_tasks,
                    1,
                    3,
                    "no standby worker running: the region's heartbeat has stopped, so the "
                    "peer region will presume it lost",
                    too_few=True,
                ),
                *([_queue_worker_failure_rate()] if failure_rate_alarm else []),
                # The per-tenant caps fail open while the cache is down (tenant_slots.py):
                # reports still run once each, but one tenant's burst can fill the fleet.
                AlarmSpec(
                    "TenantCapsOff",
                    fail_open,
                    0,
                    5,
                    "per-tenant running caps off for 5 minutes: the cache does not answer "
                    "the workers' slot checks",
                ),
            ],
            rows=[
                [
                    cw.GraphWidget(
                        title="Stream iterator age (ms)",
                        left=[
                            iterator_age,
                            ingest.stream.metric_get_records_iterator_age_milliseconds(
                                statistic="Maximum"
                            ),
                        ],
                        width=6,
                    ),
                    cw.GraphWidget(
                        title="Stream worker (Lambda)",
                        left=[
                            function.metric_errors(period=ONE_MINUTE),
                            function.metric_throttles(period=ONE_MINUTE),
                        ],
                        right=[function.metric_duration(statistic="p99", period=ONE_MINUTE)],
                        width=6,
                    ),
                    cw.GraphWidget(
                        title="Reports",
                        left=[
                            *(custom_metric(r.METRIC.REPORTS_COMPLETED, s) for s in runners),
                            *(custom_metric(r.METRIC.REPORTS_FAILED, s) for s in runners),
                        ],
                        right=[
                            custom_metric(r.METRIC.REPORT_DURATION, s, statistic="p99")
                            for s in runners
                        ],
                        width=6,
                    ),
                    cw.GraphWidget(
                        title="Queues: age of oldest message (s)",
                        left=[oldest, standby_oldest],
                        width=6,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Standby worker (running tasks = heartbeat; standby queue)",
                        left=[standby_tasks],
                        right=[
                            ingest.standby_queue.metric_approximate_number_of_messages_visible(
                                statistic="Maximum", period=ONE_MINUTE
                            ),
                            ingest.standby_queue.metric_approximate_number_of_messages_not_visible(
                                statistic="Maximum", period=ONE_MINUTE
                            ),
                        ],
                        width=12,
                    ),
                    cw.GraphWidget(
                        title="Stream failures (given-up batches; drain errors)",
                        left=[stream_failures],
                        right=[drain.metric_errors(period=ONE_MINUTE)],
                        width=12,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Tasks put off over their tenant's max_running (by tenant class)",
                        left=[
                            _deferred_metric(service, tenant_class)
                            for service in runners
                            for tenant_class in r.TENANT_CLASSES
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Put-off tasks: wait for a slot from acceptance (ms)",
                        left=[
                            custom_metric(r.METRIC.SLOT_WAIT, r.SERVICE_QUEUE_WORKER, statistic=s)
                            for s in ("p50", "p99")
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Slot checks uncapped (cache down)", left=[fail_open], width=8
                    ),
                ],
            ],
        )


def _deferred_metric(service: str, tenant_class: str) -> cw.Metric:
    """TasksDeferred of one service and tenant class (functions/deferral.py emits it with
    both dimensions)."""
    return cw.Metric(
        namespace=r.METRICS_NAMESPACE,
        metric_name=r.METRIC.TASKS_DEFERRED,
        dimensions_map={
            r.METRIC_SERVICE_DIMENSION: service,
            r.METRIC_TENANT_CLASS_DIMENSION: tenant_class,
        },
        statistic="Sum",
        period=ONE_MINUTE,
        label=f"{service} {tenant_class}",
    )


def _queue_worker_failure_rate() -> AlarmSpec:
    service = r.SERVICE_QUEUE_WORKER
    rate = cw.MathExpression(
        expression=(
            f"IF(done + failed >= {FAILURE_RATE_MIN_REPORTS}, 100 * failed / (done + failed), 0)"
        ),
        using_metrics={
            "done": custom_metric(r.METRIC.REPORTS_COMPLETED, service),
            "failed": custom_metric(r.METRIC.REPORTS_FAILED, service),
        },
        label=f"{service} reports failing (%)",
        period=ONE_MINUTE,
    )
    return AlarmSpec(
        "QueueWorkerFailureRate",
        rate,
        FAILURE_RATE_LIMIT_PERCENT,
        3,
        f"over {FAILURE_RATE_LIMIT_PERCENT} % of the queue worker's reports failing",
    )
