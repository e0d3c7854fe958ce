"""The region's monitoring: the SNS topic alarms page, the paging alarms, the composite
"region unhealthy" alarm (the one signal to act on: shift traffic away with the GA dial) and
the dashboard.

The components of the regional stack (cdk/stacks/region/) feed it: each names the alarms and
the dashboard rows of its own resources (`Signals`); this construct creates them all in one
place, so every alarm pages the same topic and sits under `Monitoring` (its logical id
prefix)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from cdk.constructs.log_queries import SavedQueries, service_log_groups
from cdk.constructs.slo import RegionSlos
from reportgrid import resources as r

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)


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
class AlarmSpec:
    """One paging alarm: above `threshold` for `periods` periods (missing data is fine), or,
    when `too_few`, below it (missing data breaches: nothing running reports nothing).
    `region_unhealthy` makes it a cause of the composite: the region cannot serve clients
    or process their tasks, so traffic should move."""

    name: str
    metric: cw.IMetric
    threshold: float
    periods: int
    what: str
    too_few: bool = False
    region_unhealthy: bool = False


@dataclass(frozen=True, slots=True)
class Signals:
    """What one component feeds the region's monitoring."""

    alarms: Sequence[AlarmSpec] = ()
    rows: Sequence[Sequence[cw.IWidget]] = ()  # dashboard rows, in order


def alarm_name(region: str, name: str) -> str:
    return f"reportgrid-{region}-{name}"


def region_unhealthy_alarm_name(region: str) -> str:
    return alarm_name(region, "unhealthy")


class RegionMonitoring(Construct):
    """Exposes `topic`, `alarms` (name -> alarm), `region_unhealthy`, `dashboard` and, with
    `named_alarms`, `page_alarm_names` (every alarm's name, the composite's last).

    `named_alarms` names each alarm `reportgrid-<region>-<name>` (as the composite always
    is), so that something deployed before the region can name them: the pipeline's bake
    step (cdk/stacks/pipeline.py). Without it CloudFormation generates the names, as it did
    before the pipeline; an alarm whose name changes is replaced (its history starts over),
    so a deployment moved to the pipeline replaces its alarms once."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        region: str,
        signals: Sequence[Signals],
        alarm_email: str | None,
        named_alarms: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        self.topic = self._topic(alarm_email)
        action = cw_actions.SnsAction(self.topic)
        specs = [spec for signal in signals for spec in signal.alarms]
        self.alarms: dict[str, cw.Alarm] = {}
        for spec in specs:
            self.alarms[spec.name] = alarm = cw.Alarm(
                self,
                spec.name,
                alarm_name=alarm_name(region, spec.name) if named_alarms else None,
                alarm_description=f"Reportgrid {region}: {spec.what}",
                metric=spec.metric,
                threshold=spec.threshold,
                evaluation_periods=spec.periods,
                comparison_operator=(
                    cw.ComparisonOperator.LESS_THAN_THRESHOLD
                    if spec.too_few
                    else cw.ComparisonOperator.GREATER_THAN_THRESHOLD
                ),
                treat_missing_data=(
                    cw.TreatMissingData.BREACHING
                    if spec.too_few
                    else cw.TreatMissingData.NOT_BREACHING
                ),
            )
            alarm.add_alarm_action(action)
        # The SLOs' burn-rate pairs (cdk/slo.py): each pages; a fast burn moves traffic.
        self.slos = RegionSlos(
            self,
            "Slo",
            region=region,
            action=action,
            alarm_name=lambda name: alarm_name(region, name),
            named_alarms=named_alarms,
        )
        self.region_unhealthy = cw.CompositeAlarm(
            self,
            "RegionUnhealthy",
            composite_alarm_name=region_unhealthy_alarm_name(region),
            alarm_description=(
                f"Reportgrid {region} cannot serve: no healthy edge, edge failing, tasks "
                "not processed, or an SLO's error budget burning fast. Consider setting this "
                "region's GA traffic dial to 0."
            ),
            alarm_rule=cw.AlarmRule.any_of(
                *(
                    cw.AlarmRule.from_alarm(self.alarms[spec.name], cw.AlarmState.ALARM)
                    for spec in specs
                    if spec.region_unhealthy
                ),
                *(
                    cw.AlarmRule.from_alarm(pair, cw.AlarmState.ALARM)
                    for pair in self.slos.region_unhealthy
                ),
            ),
        )
        self.region_unhealthy.add_alarm_action(action)
        # The investigation's saved Logs Insights queries over every process's log group.
        self.queries = SavedQueries(self, "Queries", log_groups=service_log_groups(Stack.of(self)))
        self.page_alarm_names: tuple[str, ...] = (
            (
                *(alarm_name(region, name) for name in self.alarms),
                *self.slos.pair_names.values(),
                region_unhealthy_alarm_name(region),
            )
            if named_alarms
            else ()
        )

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"reportgrid-{region}",
            default_interval=Duration.hours(3),
        )
        for signal in signals:
            for row in signal.rows:
                self.dashboard.add_widgets(*row)
        for row in self.slos.rows:
            self.dashboard.add_widgets(*row)
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(
                title="Alarms",
                alarms=[*self.alarms.values(), *self.slos.pairs.values(), self.region_unhealthy],
                width=24,
            )
        )

    def _topic(self, alarm_email: str | None) -> sns.Topic:
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
        topic = sns.Topic(
            self, "Topic", display_name="Reportgrid alarms", master_key=key, enforce_ssl=True
        )
        # enforce_ssl writes a topic policy with only the TLS deny, and a topic policy
        # replaces SNS's default one: without this statement every alarm action fails with
        # "not authorized to perform: SNS:Publish"
        # (repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger). Only this
        # account's alarms in this region may publish (confused-deputy conditions).
        stack = Stack.of(self)
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
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
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic
