"""The scheduler (docs/SCHEDULES.md): per region ONE EventBridge Scheduler schedule,
`rate(1 minute)`, in its own group, invoking the scheduler Lambda (functions/scheduler) with
the minute it fires for; the Lambda submits every Reportgrid schedule due by then.

    Scheduler group reportgrid / schedule rate(1 minute), flexible window OFF
        --Invoke, Input {"scheduled_time": <aws.scheduler.scheduled-time>}-->
            Lambda functions.scheduler.handler.handler (reserved concurrency 1)
        '- invocations Scheduler could not deliver (after its retries): SQS DLQ (alarm)

Scheduler's role may only invoke that one function and send to its DLQ, and only Scheduler
may assume it, for schedules of this account's group (confused-deputy conditions,
docs.aws.amazon.com/scheduler/latest/UserGuide/cross-service-confused-deputy-prevention.html).

Scheduler invokes a Lambda target asynchronously (Lambda docs, with-eventbridge-scheduler
.html): its retry policy and DLQ cover only the hand-over to Lambda. A run that fails in
the function is not retried (MaximumRetryAttempts 0), because the next minute's run finds
every schedule still due and fires it (the fire's idempotency key makes a repeat one
report). Reserved concurrency 1: two runs at once would be safe (the claims make a double
fire one report) but would do the same work twice; a run that outlives its minute makes
the next one wait in Lambda's queue instead (a throttled asynchronous event is retried
with backoff, invocation-async-error-handling.html), up to MAX_EVENT_AGE.

Outside the VPC: it calls AWS APIs only (the table, the task stream), never the cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.constructs.monitoring import FIVE_MINUTES, ONE_MINUTE, AlarmSpec, Signals, custom_metric
from cdk.constructs.nag import suppress
from cdk.constructs.python_function import python_function
from reportgrid import resources as r

E = r.ENV
HANDLER: Final = "functions.scheduler.handler.handler"
SERVICE: Final = r.SERVICE_SCHEDULER
MEMORY_MIB: Final = 256  # queries, GetItems and PutRecords: I/O bound
EXPRESSION: Final = "rate(1 minute)"
# Scheduler's context attribute: the minute the invocation is for, ISO 8601 in UTC
# (managing-schedule-context-attributes.html); the handler takes it as "now".
SCHEDULED_TIME: Final = "<aws.scheduler.scheduled-time>"
TARGET_INPUT: Final = json.dumps({"scheduled_time": SCHEDULED_TIME})
# Scheduler's retries of an invocation it could not hand to Lambda (throttled by the
# Lambda API, a service error): within the minute, then the DLQ; a later minute's run
# catches up anything this one would have fired.
TARGET_MAX_EVENT_AGE_SECONDS: Final = 60  # the minimum Scheduler accepts
TARGET_MAX_RETRIES: Final = 3
# Lambda's own queue for the asynchronous invocation: a run that waits behind the previous
# one (reserved concurrency 1, each run at most SCHEDULER_TIMEOUT_SECONDS) still starts;
# an event older than this is dropped, its minute caught up by the next run.
MAX_EVENT_AGE: Final = Duration.seconds(2 * r.SCHEDULER_TIMEOUT_SECONDS)
RESERVED_CONCURRENCY: Final = 1
# The table calls of functions/scheduler: Query (the tenant index, due partitions), GetItem
# (schedule, report and tenant items), PutItem (idempotency claims, the fire's report),
# UpdateItem and DeleteItem (the schedule and its due item, in TransactWriteItems, which
# IAM authorizes as its parts: a Put, an Update, a Delete).
TABLE_ACTIONS: Final = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
)
STREAM_ACTIONS: Final = ("kinesis:PutRecords",)
_RETENTION: Final = Duration.days(14)
# Fires more than this late (seconds after their minute) for FIRE_LAG_PERIODS minutes:
# runs are failing or cannot keep up with a popular minute.
FIRE_LAG_LIMIT_SECONDS: Final = 120
FIRE_LAG_PERIODS: Final = 3
# No run for this many minutes: the schedule is disabled or gone, or cannot invoke.
NOT_RUNNING_PERIODS: Final = 5


class Scheduler(Construct):
    """Exposes `group`, `schedule`, `role` (Scheduler's), `dlq`, `function` and `signals`."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        environment: Mapping[str, str],
        table: dynamodb.ITableV2,
        stream: kinesis.IStream,
        id_secret: secretsmanager.ISecret,
        input_buckets: Sequence[str] = (),
        peer_region: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.function = python_function(
            self,
            code=code,
            handler=HANDLER,
            service=SERVICE,
            environment={
                **environment,
                E.TABLE_NAME: r.TABLE_NAME,
                E.TASK_STREAM_NAME: stream.stream_name,
                # A fire's template is validated again as SubmitReport would (its S3 inputs).
                E.INPUT_BUCKETS: ",".join(input_buckets),
                # The peer's missed fires are this region's to take over (due.fires_here).
                **({E.PEER_REGION: peer_region} if peer_region else {}),
            },
            memory_mib=MEMORY_MIB,
            timeout_seconds=r.SCHEDULER_TIMEOUT_SECONDS,
            reserved_concurrency=RESERVED_CONCURRENCY,
        )
        self.function.configure_async_invoke(max_event_age=MAX_EVENT_AGE, retry_attempts=0)
        self._grant(stack, table, stream, id_secret)

        self.dlq = sqs.Queue(
            self,
            "Dlq",
            queue_name=r.SCHEDULER_DLQ_NAME,
            # SSE-SQS: Scheduler sends with its role, no key policy needed.
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=_RETENTION,
        )
        suppress(
            self.dlq,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter destination of the scheduler's target; "
            "invocations Scheduler gave up on stop here for inspection.",
        )
        self.group = scheduler.CfnScheduleGroup(self, "Group", name=r.SCHEDULER_GROUP_NAME)
        self.role = iam.Role(
            self,
            "Role",
            description="Reportgrid scheduler: EventBridge Scheduler invokes the scheduler "
            "function",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": stack.account,
                        "aws:SourceArn": self.group.attr_arn,
                    }
                },
            ),
        )
        # Exactly the function (not its versions: Scheduler invokes $LATEST), and its DLQ
        # (configuring-schedule-dlq.html: the execution role sends the dead-letter event).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[self.function.function_arn]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.dlq.queue_arn])
        )
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            name=r.SCHEDULER_SCHEDULE_NAME,
            group_name=r.SCHEDULER_GROUP_NAME,
            description="Reportgrid: fire every schedule due by this minute",
            schedule_expression=EXPRESSION,
            # OFF: each minute's invocation at that minute, not somewhere in a window.
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.function.function_arn,
                role_arn=self.role.role_arn,
                input=TARGET_INPUT,
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_event_age_in_seconds=TARGET_MAX_EVENT_AGE_SECONDS,
                    maximum_retry_attempts=TARGET_MAX_RETRIES,
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self.dlq.queue_arn
                ),
            ),
        )
        self.schedule.node.add_dependency(self.group)
        # The role's policy first: a schedule created before it could not invoke.
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.schedule.node.add_dependency(policy)
        self.signals = self._signals()

    def _grant(
        self,
        stack: Stack,
        table: dynamodb.ITableV2,
        stream: kinesis.IStream,
        id_secret: secretsmanager.ISecret,
    ) -> None:
        """Exactly the calls of functions/scheduler: items of the table, the due partitions
        of the tenant index, PutRecords of the fires' tasks, and the id secrets its settings
        read at cold start. The stream and the table use AWS managed keys: no KMS grants."""
        function = self.function
        index_arn = stack.format_arn(
            service="dynamodb",
            resource="table",
            resource_name=f"{r.TABLE_NAME}/index/{r.TENANT_INDEX_NAME}",
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=list(TABLE_ACTIONS), resources=[table.table_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[index_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=list(STREAM_ACTIONS), resources=[stream.stream_arn])
        )
        id_secret.grant_read(function)

    def _signals(self) -> Signals:
        function = self.function
        lag = custom_metric(r.METRIC.SCHEDULE_FIRE_LAG, SERVICE, statistic="Maximum")
        failed = custom_metric(r.METRIC.SCHEDULE_FIRES_FAILED, SERVICE)
        dead = self.dlq.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=ONE_MINUTE
        )
        invocations = function.metric_invocations(period=ONE_MINUTE)
        return Signals(
            alarms=[
                AlarmSpec(
                    "SchedulerErrors",
                    function.metric_errors(period=FIVE_MINUTES),
                    1,
                    1,
                    "scheduler runs failing (more than one in 5 minutes)",
                ),
                AlarmSpec(
                    "SchedulerDeadLetters",
                    dead,
                    0,
                    1,
                    "EventBridge Scheduler could not invoke the scheduler function "
                    "(its DLQ is not empty)",
                ),
                AlarmSpec(
                    "SchedulerNotRunning",
                    invocations,
                    1,
                    NOT_RUNNING_PERIODS,
                    f"no scheduler run for {NOT_RUNNING_PERIODS} minutes: no schedule fires",
                    too_few=True,
                ),
                AlarmSpec(
                    "ScheduleFireLag",
                    lag,
                    FIRE_LAG_LIMIT_SECONDS,
                    FIRE_LAG_PERIODS,
                    f"scheduled reports submitted over {FIRE_LAG_LIMIT_SECONDS} s late",
                ),
                AlarmSpec(
                    "ScheduleFiresFailed",
                    failed,
                    0,
                    1,
                    "schedule fires the scheduler could not submit",
                ),
            ],
            rows=[
                [
                    cw.GraphWidget(
                        title="Scheduler runs (invocations, errors; duration p99)",
                        left=[invocations, function.metric_errors(period=ONE_MINUTE)],
                        right=[function.metric_duration(statistic="p99", period=ONE_MINUTE)],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Schedule fires (lag s; failed)", left=[lag], right=[failed], width=8
                    ),
                    cw.GraphWidget(title="Scheduler DLQ depth", left=[dead], width=8),
                ]
            ],
        )
