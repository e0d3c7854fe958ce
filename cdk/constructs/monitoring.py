"""The region's dashboard, its paging alarms, the SNS topic they notify, and the composite
"region unhealthy" alarm (the one signal to act on: shift traffic away with the GA dial)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from reportgrid import resources as r

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
# The alarms that fire on too little (and on no data), not on too much.
_TOO_FEW = frozenset({"EdgeNoHealthyTargets", "StandbyHeartbeat"})
# The composite "region unhealthy": this region cannot serve clients or process their
# tasks, so traffic should move. The multi-region safety net (mirror, standby, heartbeat)
# and the stream-failure drain page on their own: the region still serves when they fail.
REGION_UNHEALTHY_CAUSES = (
    "EdgeNoHealthyTargets",
    "EdgeElb5xx",
    "EdgeFaults",
    "StreamIteratorAge",
)


def custom_metric(
    name: str, service: str, *, statistic: str = "Sum", region: str | None = None
) -> cw.Metric:
    """A metric the edge/workers emit (EMF via Powertools) in METRICS_NAMESPACE."""
    return cw.Metric(
        namespace=r.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={r.METRIC_SERVICE_DIMENSION: service},
        statistic=statistic,
        period=ONE_MINUTE,
        region=region,
    )


@dataclass(frozen=True, slots=True)
class MonitoredResources:
    """What the region runs, as the monitoring construct needs it."""

    load_balancer: elbv2.IApplicationLoadBalancer
    target_group: elbv2.ApplicationTargetGroup
    function: lambda_.IFunction
    mirror_function: lambda_.IFunction | None  # None in a single-region deployment
    drain_function: lambda_.IFunction
    stream: kinesis.IStream
    heavy_queue: sqs.IQueue
    standby_queue: sqs.IQueue
    failure_queue: sqs.IQueue
    dead_letter_queues: Sequence[sqs.IQueue]
    cluster_name: str
    standby_service_name: str
    table_name: str
    cache_name: str
    replica_regions: Sequence[str]


class RegionMonitoring(Construct):
    """Exposes `topic`, `alarms` (name -> alarm) and `region_unhealthy` (composite)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        region: str,
        resources: MonitoredResources,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, id_)
        res = resources
        key = kms.Key(
            self,
            "TopicKey",
            description="Reportgrid alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes to an encrypted topic only with a customer managed key whose
        # policy lets it Decrypt and GenerateDataKey (the AWS managed aws/sns key does not):
        # repost.aws/knowledge-center/cloudwatch-configure-alarm-sns.
        key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        self.topic = sns.Topic(
            self, "Topic", display_name="Reportgrid alarms", master_key=key, enforce_ssl=True
        )
        # enforce_ssl writes a topic policy with only the TLS deny, and a topic policy
        # replaces SNS's default one: without this statement every alarm action fails with
        # "not authorized to perform: SNS:Publish"
        # (repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger). Only this
        # account's alarms in this region may publish (confused-deputy conditions).
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        action = cw_actions.SnsAction(self.topic)

        healthy_hosts = res.target_group.metrics.healthy_host_count(
            statistic="Minimum", period=ONE_MINUTE
        )
        elb_5xx = res.load_balancer.metrics.http_code_elb(
            elbv2.HttpCodeElb.ELB_5XX_COUNT, period=ONE_MINUTE
        )
        iterator_age = res.function.metric("IteratorAge", statistic="Maximum", period=ONE_MINUTE)
        faults = custom_metric(r.METRIC.REQUEST_FAULTS, r.SERVICE_EDGE)
        dlq_depth = [
            q.metric_approximate_number_of_messages_visible(statistic="Maximum", period=ONE_MINUTE)
            for q in res.dead_letter_queues
        ]
        oldest = res.heavy_queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=ONE_MINUTE
        )
        standby_oldest = res.standby_queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=ONE_MINUTE
        )
        stream_failures = res.failure_queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=ONE_MINUTE
        )
        # The standby worker writes the region's heartbeat item; with no standby task
        # running the peer presumes this region lost and takes its unstarted reports.
        standby_tasks = cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": res.cluster_name,
                "ServiceName": res.standby_service_name,
            },
            statistic="Minimum",
            period=ONE_MINUTE,
        )
        ddb_throttles = cw.MathExpression(
            expression="read + write",
            using_metrics={
                "read": _ddb(res.table_name, "ReadThrottleEvents"),
                "write": _ddb(res.table_name, "WriteThrottleEvents"),
            },
            label="DynamoDB throttle events",
            period=ONE_MINUTE,
        )

        def alarm(
            id_: str, metric: cw.IMetric, threshold: float, periods: int, what: str
        ) -> cw.Alarm:
            a = cw.Alarm(
                self,
                id_,
                alarm_description=f"Reportgrid {region}: {what}",
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                # "Too few" alarms: no data means nothing is running, which is the alarm.
                comparison_operator=(
                    cw.ComparisonOperator.LESS_THAN_THRESHOLD
                    if id_ in _TOO_FEW
                    else cw.ComparisonOperator.GREATER_THAN_THRESHOLD
                ),
                treat_missing_data=(
                    cw.TreatMissingData.BREACHING
                    if id_ in _TOO_FEW
                    else cw.TreatMissingData.NOT_BREACHING
                ),
            )
            a.add_alarm_action(action)
            return a

        self.alarms: dict[str, cw.Alarm] = {
            "EdgeNoHealthyTargets": alarm(
                "EdgeNoHealthyTargets", healthy_hosts, 1, 2, "no healthy edge task behind the ALB"
            ),
            "EdgeElb5xx": alarm("EdgeElb5xx", elb_5xx, 50, 3, "ALB answers 5xx (targets failing)"),
            "EdgeFaults": alarm("EdgeFaults", faults, 100, 3, "edge RPCs ending in server faults"),
            "StreamIteratorAge": alarm(
                "StreamIteratorAge", iterator_age, 60_000, 5, "stream worker falls behind (>60 s)"
            ),
            "StreamWorkerErrors": alarm(
                "StreamWorkerErrors",
                res.function.metric_errors(period=FIVE_MINUTES),
                10,
                1,
                "stream worker invocations failing",
            ),
            "HeavyQueueOldest": alarm(
                "HeavyQueueOldest", oldest, 900, 5, "heavy reports waiting over 15 minutes"
            ),
            "DeadLetters": alarm(
                "DeadLetters",
                cw.MathExpression(
                    expression=" + ".join(f"d{i}" for i in range(len(dlq_depth))),
                    using_metrics={f"d{i}": m for i, m in enumerate(dlq_depth)},
                    label="messages in dead-letter queues",
                    period=ONE_MINUTE,
                ),
                0,
                1,
                "tasks reached a dead-letter queue",
            ),
            "DynamoDbThrottles": alarm(
                "DynamoDbThrottles", ddb_throttles, 100, 3, "DynamoDB throttling requests"
            ),
            # Any message: a stream consumer gave up on a batch. The drain re-drives it, but
            # it means records were retried to exhaustion (poison, or a long outage).
            "StreamFailures": alarm(
                "StreamFailures",
                stream_failures,
                0,
                1,
                "a stream consumer gave up on a batch (stream-failure queue not empty)",
            ),
            "StreamFailureDrainErrors": alarm(
                "StreamFailureDrainErrors",
                res.drain_function.metric_errors(period=FIVE_MINUTES),
                0,
                1,
                "the stream-failure drain is failing",
            ),
            # Mirrored tasks are delayed by the grace period and usually dropped right after
            # it (the home region ran them); a standby stuck for 15 minutes is not working.
            "StandbyQueueOldest": alarm(
                "StandbyQueueOldest",
                standby_oldest,
                900,
                5,
                "mirrored tasks waiting in the standby queue over 15 minutes",
            ),
            "StandbyHeartbeat": alarm(
                "StandbyHeartbeat",
                standby_tasks,
                1,
                3,
                "no standby worker running: the region's heartbeat has stopped, so the peer "
                "region will presume it lost",
            ),
        }
        if res.mirror_function is not None:
            mirror = res.mirror_function
            self.alarms["MirrorErrors"] = alarm(
                "MirrorErrors",
                mirror.metric_errors(period=FIVE_MINUTES),
                10,
                1,
                "task mirror to the peer region failing",
            )
            # Mirror lag adds to the recovery point of a region loss (tasks not yet copied).
            self.alarms["MirrorIteratorAge"] = alarm(
                "MirrorIteratorAge",
                mirror.metric("IteratorAge", statistic="Maximum", period=ONE_MINUTE),
                60_000,
                5,
                "task mirror falls behind (>60 s): tasks not yet safe in the peer region",
            )
        self.region_unhealthy = cw.CompositeAlarm(
            self,
            "RegionUnhealthy",
            composite_alarm_name=f"reportgrid-{region}-unhealthy",
            alarm_description=(
                f"Reportgrid {region} cannot serve: no healthy edge, edge failing, or tasks "
                "not processed. Consider setting this region's GA traffic dial to 0."
            ),
            alarm_rule=cw.AlarmRule.any_of(
                *(
                    cw.AlarmRule.from_alarm(self.alarms[name], cw.AlarmState.ALARM)
                    for name in REGION_UNHEALTHY_CAUSES
                )
            ),
        )
        self.region_unhealthy.add_alarm_action(action)

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"reportgrid-{region}",
            default_interval=Duration.hours(3),
        )
        edge = r.SERVICE_EDGE
        cache_hit_rate = cw.MathExpression(
            expression="100 * hits / (hits + misses)",
            using_metrics={
                "hits": custom_metric(r.METRIC.CACHE_HITS, edge),
                "misses": custom_metric(r.METRIC.CACHE_MISSES, edge),
            },
            label="edge cache hit rate %",
            period=ONE_MINUTE,
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Edge requests",
                left=[
                    custom_metric(r.METRIC.REQUESTS, edge),
                    res.load_balancer.metrics.request_count(period=ONE_MINUTE),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Edge latency (ms)",
                left=[
                    custom_metric(r.METRIC.REQUEST_LATENCY, edge, statistic="p50"),
                    custom_metric(r.METRIC.REQUEST_LATENCY, edge, statistic="p99"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Edge status",
                left=[
                    res.target_group.metrics.http_code_target(
                        elbv2.HttpCodeTarget.TARGET_2XX_COUNT
                    ),
                    res.target_group.metrics.http_code_target(
                        elbv2.HttpCodeTarget.TARGET_4XX_COUNT
                    ),
                    res.target_group.metrics.http_code_target(
                        elbv2.HttpCodeTarget.TARGET_5XX_COUNT
                    ),
                    elb_5xx,
                    faults,
                ],
                right=[healthy_hosts],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Shed requests",
                left=[custom_metric(r.METRIC.SHED_REQUESTS, edge)],
                width=6,
            ),
            cw.GraphWidget(
                title="Kinesis batch size (records per PutRecords)",
                left=[
                    custom_metric(r.METRIC.BATCH_SIZE, edge, statistic="Average"),
                    custom_metric(r.METRIC.BATCH_SIZE, edge, statistic="Maximum"),
                ],
                width=6,
            ),
            cw.GraphWidget(
                title="Stream iterator age (ms)",
                left=[
                    iterator_age,
                    res.stream.metric_get_records_iterator_age_milliseconds(statistic="Maximum"),
                ],
                width=6,
            ),
            cw.GraphWidget(
                title="Cache hit rate (%)",
                left=[cache_hit_rate],
                right=[
                    cw.Metric(
                        namespace="AWS/ElastiCache",
                        metric_name="ElastiCacheProcessingUnits",
                        dimensions_map={"clusterId": res.cache_name},
                        period=ONE_MINUTE,
                        statistic="Sum",
                    )
                ],
                width=6,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Queues: age of oldest message (s)",
                left=[oldest, standby_oldest],
                width=6,
            ),
            cw.GraphWidget(title="Dead-letter queue depth", left=dlq_depth, width=6),
            cw.GraphWidget(
                title="Stream worker (Lambda)",
                left=[
                    res.function.metric_errors(period=ONE_MINUTE),
                    res.function.metric_throttles(period=ONE_MINUTE),
                ],
                right=[
                    res.function.metric_duration(statistic="p99", period=ONE_MINUTE),
                ],
                width=6,
            ),
            cw.GraphWidget(
                title="Reports",
                left=[
                    custom_metric(r.METRIC.REPORTS_COMPLETED, service)
                    for service in (r.SERVICE_STREAM_WORKER, r.SERVICE_QUEUE_WORKER)
                ]
                + [
                    custom_metric(r.METRIC.REPORTS_FAILED, service)
                    for service in (r.SERVICE_STREAM_WORKER, r.SERVICE_QUEUE_WORKER)
                ],
                right=[
                    custom_metric(r.METRIC.REPORT_DURATION, service, statistic="p99")
                    for service in (r.SERVICE_STREAM_WORKER, r.SERVICE_QUEUE_WORKER)
                ],
                width=6,
            ),
        )
        multi_region: list[cw.IMetric] = []
        if res.mirror_function is not None:
            multi_region = [
                res.mirror_function.metric_errors(period=ONE_MINUTE),
                res.mirror_function.metric("IteratorAge", statistic="Maximum", period=ONE_MINUTE),
            ]
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Task mirror (errors; iterator age ms)",
                left=multi_region[:1],
                right=multi_region[1:],
                width=8,
            ),
            cw.GraphWidget(
                title="Standby worker (running tasks = heartbeat; standby queue)",
                left=[standby_tasks],
                right=[
                    res.standby_queue.metric_approximate_number_of_messages_visible(
                        statistic="Maximum", period=ONE_MINUTE
                    ),
                    res.standby_queue.metric_approximate_number_of_messages_not_visible(
                        statistic="Maximum", period=ONE_MINUTE
                    ),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Stream failures (given-up batches; drain errors)",
                left=[stream_failures],
                right=[res.drain_function.metric_errors(period=ONE_MINUTE)],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="DynamoDB throttles",
                left=[ddb_throttles],
                width=12,
            ),
            cw.GraphWidget(
                title="DynamoDB replication latency (ms)",
                left=[
                    _ddb(
                        res.table_name,
                        "ReplicationLatency",
                        statistic="Average",
                        extra={"ReceivingRegion": peer},
                    )
                    for peer in res.replica_regions
                ]
                or [
                    _ddb(
                        res.table_name,
                        "SuccessfulRequestLatency",
                        statistic="Average",
                        extra={"Operation": "GetItem"},
                    )
                ],
                width=12,
            ),
            cw.AlarmStatusWidget(
                title="Alarms",
                alarms=[*self.alarms.values(), self.region_unhealthy],
                width=24,
            ),
        )


def _ddb(
    table_name: str,
    name: str,
    *,
    statistic: str = "Sum",
    extra: dict[str, str] | None = None,
) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/DynamoDB",
        metric_name=name,
        dimensions_map={"TableName": table_name, **(extra or {})},
        statistic=statistic,
        period=ONE_MINUTE,
    )
