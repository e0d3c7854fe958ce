"""Completion events (docs/EVENTS.md): the region's EventBridge bus, and the Lambda on the
reports table's stream that puts one event on it per terminal state written in this region
(functions/events). With `TenantEventForward`, a rule that gives one tenant its events on a
bus in the tenant's own account.

The table is the data stack's global table; its replica's stream here has a generated label
(`.../stream/<time>`) that CloudFormation exposes only in the table's own stack, so the
stream ARN is read at deploy time (DescribeTable, through an AwsCustomResource).

Outside the VPC: it calls AWS APIs only (the stream, EventBridge), never the cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk.constructs.monitoring import FIVE_MINUTES, ONE_MINUTE, AlarmSpec, Signals
from cdk.constructs.nag import suppress
from cdk.constructs.python_function import python_function
from reportgrid import resources as r
from reportgrid.events import stream_filter_patterns

HANDLER = "functions.events.handler.handler"
SERVICE = r.SERVICE_EVENTS
MEMORY_MIB = 256  # decode images + PutEvents: I/O bound
# Up to 100 records a batch (PutEvents takes 10 a call: functions/events/publish.py); a
# batch is also cut at Lambda's 6 MB payload, which items with inline results can reach.
BATCH_SIZE = 100
BATCHING_WINDOW = Duration.seconds(1)
# A refused entry fails its record (ReportBatchItemFailures) and is retried; a batch that
# keeps failing is halved down to the record, retried this often, then its metadata goes
# to the failure queue (the stream keeps records 24 h: a replay must start within that).
MAX_RETRIES = 10
FAILURE_RETENTION = Duration.days(14)
# The table-stream reads the Lambda service makes with the function's role, on this
# region's replica's streams (the DynamoDB guide's example policy for a stream-triggered
# function: iam-policy-example-lamda-process-dynamodb-streams.html).
STREAM_READ_ACTIONS = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)
# The DescribeTable output the stack reads (the custom resource returns only this path:
# a custom resource's response is capped at 4 KB).
STREAM_ARN_PATH = "Table.LatestStreamArn"
# The construct id CDK gives the AwsCustomResource provider function (one per stack).
_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"


class CompletionEvents(Construct):
    """Exposes `bus`, `function`, `mapping`, `failure_queue`, `stream_arn` and `signals`."""

    def __init__(
        self, scope: Construct, id_: str, *, code: lambda_.Code, environment: Mapping[str, str]
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        region = stack.region
        self.bus = events.EventBus(self, "Bus", event_bus_name=r.EVENT_BUS_NAME)
        self.failure_queue = sqs.Queue(
            self,
            "FailureQueue",
            queue_name=r.EVENTS_FAILURE_QUEUE_NAME,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=FAILURE_RETENTION,
        )
        suppress(
            self.failure_queue,
            "AwsSolutions-SQS3",
            "This queue is itself the on-failure destination of the events function's stream "
            "mapping; its messages (batch metadata) stop here for the runbook's replay.",
        )
        table_arn = stack.format_arn(
            service="dynamodb", resource="table", resource_name=r.TABLE_NAME
        )
        streams_arn = f"{table_arn}/stream/*"
        describe = cr.AwsSdkCall(
            service="DynamoDB",
            action="describeTable",
            parameters={"TableName": r.TABLE_NAME},
            physical_resource_id=cr.PhysicalResourceId.from_response(STREAM_ARN_PATH),
            output_paths=[STREAM_ARN_PATH],
        )
        self.stream_lookup = cr.AwsCustomResource(
            self,
            "TableStream",
            on_create=describe,
            on_update=describe,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["dynamodb:DescribeTable"], resources=[table_arn])]
            ),
            install_latest_aws_sdk=False,  # the runtime's SDK: no npm install at deploy
        )
        # The provider is a singleton at the stack's root, not under this construct.
        provider = stack.node.find_child(_PROVIDER_ID)
        suppress(
            provider,
            "AwsSolutions-L1",
            "The CDK AwsCustomResource provider picks its own Node.js runtime.",
        )
        suppress(
            provider,
            "AwsSolutions-IAM4",
            "The CDK AwsCustomResource provider's role uses AWSLambdaBasicExecutionRole for "
            "its logs only; its one call (DescribeTable on the reports table) is scoped above.",
            findings=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole"
            ],
        )
        self.stream_arn = self.stream_lookup.get_response_field(STREAM_ARN_PATH)

        self.function = python_function(
            self,
            code=code,
            handler=HANDLER,
            service=SERVICE,
            environment={**environment, r.ENV.EVENT_BUS_NAME: self.bus.event_bus_name},
            memory_mib=MEMORY_MIB,
        )
        # functions/events: PutEvents on this bus, nothing else.
        self.bus.grant_put_events_to(self.function)
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=list(STREAM_READ_ACTIONS), resources=[streams_arn])
        )
        assert self.function.role is not None
        suppress(
            self.function.role,
            "AwsSolutions-IAM5",
            "The reports table replica's stream in this region has a generated label "
            "(stream/<time>): the stream reads are scoped to that table's streams.",
            findings=[
                f"Resource::arn:<AWS::Partition>:dynamodb:{region}:{stack.account}:"
                f"table/{r.TABLE_NAME}/stream/*"
            ],
        )
        self.mapping = lambda_.EventSourceMapping(
            self,
            "Mapping",
            target=self.function,
            event_source_arn=self.stream_arn,
            # LATEST: a mapping created on a table that already has a day of stream
            # records (DynamoDB streams keep them 24 h) must not announce that day again;
            # TRIM_HORIZON ("the oldest record in the shard", CDK StartingPosition docs)
            # would re-publish every terminal state of it on the first deploy. Events are
            # for reports that end after the publisher exists.
            starting_position=lambda_.StartingPosition.LATEST,
            batch_size=BATCH_SIZE,
            max_batching_window=BATCHING_WINDOW,
            bisect_batch_on_error=True,
            retry_attempts=MAX_RETRIES,
            report_batch_item_failures=True,
            on_failure=sources.SqsDlq(self.failure_queue),
            # Only terminal transitions of report items written here invoke the function.
            filters=[{"pattern": json.dumps(p)} for p in stream_filter_patterns(region)],
        )
        # The mapping reads the stream only once the role may.
        self.mapping.node.add_dependency(self.function.role)
        self.signals = self._signals()

    def _signals(self) -> Signals:
        function = self.function
        iterator_age = function.metric("IteratorAge", statistic="Maximum", period=ONE_MINUTE)
        given_up = self.failure_queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=ONE_MINUTE
        )
        return Signals(
            alarms=[
                # Batches given up on: their reports' events are not published (RUNBOOK).
                AlarmSpec("EventsGivenUp", given_up, 0, 1, "completion events were dropped"),
                AlarmSpec(
                    "EventsErrors",
                    function.metric_errors(period=FIVE_MINUTES),
                    10,
                    1,
                    "the completion-event publisher is failing",
                ),
                AlarmSpec(
                    "EventsIteratorAge",
                    iterator_age,
                    60_000,
                    5,
                    "completion events lag the table by more than a minute",
                ),
            ],
            rows=[
                [
                    cw.GraphWidget(
                        title="Completion events (errors; iterator age ms; given up)",
                        left=[function.metric_errors(period=ONE_MINUTE), given_up],
                        right=[iterator_age],
                        width=12,
                    )
                ]
            ],
        )


def tenant_event_pattern(tenant: str) -> dict[str, list[str] | dict[str, list[str]]]:
    """The event pattern of one tenant's completion events."""
    return {"source": [r.EVENT_SOURCE], "detail": {"tenant": [tenant]}}


class TenantEventForward(Construct):
    """A rule on the region's bus that forwards `tenant`'s completion events to a bus in
    the tenant's account (`target_bus_arn`), with the role EventBridge assumes to put
    them there (a cross-account event-bus target takes a role: events:PutEvents on that
    bus alone). The tenant's bus policy must allow this role (docs/EVENTS.md). Exposes
    `rule` and `role`."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bus: events.IEventBus,
        tenant: str,
        target_bus_arn: str,
    ) -> None:
        super().__init__(scope, id_)
        target = events.EventBus.from_event_bus_arn(self, "TargetBus", target_bus_arn)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
            description=f"Puts tenant {tenant}'s completion events on its own bus",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[target_bus_arn])
        )
        self.rule = events.Rule(
            self,
            "Rule",
            event_bus=bus,
            description=f"Completion events of tenant {tenant} to its account",
            event_pattern=events.EventPattern(source=[r.EVENT_SOURCE], detail={"tenant": [tenant]}),
            targets=[targets.EventBus(target, role=self.role)],
        )
