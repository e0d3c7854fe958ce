"""Webhooks: the root signing secret (data stack, replicated), and per region the rule on the
completion-event bus, the webhook queue and its DLQ, and the delivery Lambda
(functions/webhooks) with its grants and alarms.

    bus (reportgrid-events) --rule: terminal events--> SQS reportgrid-webhooks
        --> Lambda functions.webhooks.handler --POST--> the tenant's URL
              |  retry: SendMessage to its own queue with DelaySeconds (backoff, jitter)
              '- after the retry window: SendMessage to reportgrid-webhooks-dlq (alarm)

Every terminal event goes to the queue, with or without a notify URL: only the function
knows a tenant's default webhook (its tenant item, cached), and a rule cannot. At 1 M
reports that is 1 M SQS sends by EventBridge plus ~0.2 M batched receives and deletes
(~$0.5) and ~0.1 M short invocations; an event with no webhook costs one cached lookup.

The function runs outside the VPC: it reaches the tenants' public endpoints directly and
nothing inside the VPC (functions/webhooks/safe_http.py refuses private addresses anyway).
The template never sets ENV.WEBHOOK_ALLOW_LOOPBACK (tests/infra/test_webhooks.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.constructs.monitoring import FIVE_MINUTES, ONE_MINUTE, AlarmSpec, Signals, custom_metric
from cdk.constructs.nag import suppress
from cdk.constructs.python_function import python_function
from cdk.constructs.replicated_secret import ReplicatedSecret
from reportgrid import resources as r
from reportgrid.events import DETAIL_TYPES

E = r.ENV
HANDLER = "functions.webhooks.handler.handler"
SERVICE = r.SERVICE_WEBHOOKS
MEMORY_MIB = 256
# Attempts run one after another, each at most WEBHOOK_TOTAL_TIMEOUT_SECONDS: a batch of
# receivers that never answer still ends within the function's timeout.
BATCH_SIZE = int(r.WEBHOOK_TIMEOUT_SECONDS // (r.WEBHOOK_TOTAL_TIMEOUT_SECONDS + 1))
_RETENTION = Duration.days(14)


class WebhookSecret(ReplicatedSecret):
    """The root of every tenant's signing secret (reportgrid/webhook_policy.py), one value
    in every region (a report's event may be delivered from any of them)."""

    def __init__(self, scope: Construct, id_: str, *, replica_regions: Sequence[str]) -> None:
        super().__init__(
            scope,
            id_,
            secret_name=r.WEBHOOK_SECRET_NAME,
            description="Reportgrid webhooks: the root the tenants' signing secrets derive from",
            replica_regions=replica_regions,
            rotation_note="Replacing the root would change every tenant's signing secret at "
            "once; a tenant's secret is rotated by a version bump with an overlap instead "
            "(`reportgrid admin tenant webhook-secret --rotate`, docs/RUNBOOK.md).",
        )


class Webhooks(Construct):
    """Exposes `queue`, `dlq`, `rule`, `function`, `event_source` and `signals`.

    `bus`: the region's completion-event bus; None looks it up by its name
    (resources.EVENT_BUS_NAME), for a stack whose bus another construct creates."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        environment: Mapping[str, str],
        table: dynamodb.ITableV2,
        id_secret: secretsmanager.ISecret,
        bus: events.IEventBus | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            queue_name=r.WEBHOOK_DLQ_NAME,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=_RETENTION,
        )
        suppress(
            self.dlq,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter destination of the webhook queue; "
            "given-up deliveries stop here for inspection and redrive.",
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=r.WEBHOOK_QUEUE_NAME,
            # SSE-SQS: EventBridge can send to it (a queue under the AWS managed KMS key
            # would need a key policy EventBridge cannot be given).
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=_RETENTION,
            visibility_timeout=Duration.seconds(r.WEBHOOK_VISIBILITY_TIMEOUT_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=r.WEBHOOK_MAX_RECEIVES, queue=self.dlq
            ),
        )
        self.bus = bus or events.EventBus.from_event_bus_name(self, "Bus", r.EVENT_BUS_NAME)
        self.rule = events.Rule(
            self,
            "Rule",
            rule_name=r.WEBHOOK_RULE_NAME,
            description="Reportgrid: every terminal completion event to the webhook queue",
            event_bus=self.bus,
            event_pattern=events.EventPattern(
                source=[r.EVENT_SOURCE], detail_type=list(DETAIL_TYPES.values())
            ),
        )
        # Adds the queue policy: events.amazonaws.com may SendMessage, from this rule only.
        self.rule.add_target(targets.SqsQueue(self.queue))
        self.secret = secretsmanager.Secret.from_secret_name_v2(
            self, "RootSecret", r.WEBHOOK_SECRET_NAME
        )
        self.function = python_function(
            self,
            code=code,
            handler=HANDLER,
            service=SERVICE,
            environment={
                **environment,
                E.TABLE_NAME: r.TABLE_NAME,
                E.WEBHOOK_QUEUE_URL: self.queue.queue_url,
                E.WEBHOOK_DLQ_URL: self.dlq.queue_url,
                E.WEBHOOK_SECRET_ARN: self.secret.secret_arn,
                # The real schedule, set here so that it is what runs (tests shorten it
                # only through launch.TUNING_OVERRIDES).
                E.WEBHOOK_RETRY_WINDOW_SECONDS: str(r.WEBHOOK_RETRY_WINDOW_SECONDS),
                E.WEBHOOK_BACKOFF_BASE_SECONDS: f"{r.WEBHOOK_BACKOFF_BASE_SECONDS:g}",
            },
            memory_mib=MEMORY_MIB,
            timeout_seconds=r.WEBHOOK_TIMEOUT_SECONDS,
        )
        self.event_source = sources.SqsEventSource(
            self.queue, batch_size=BATCH_SIZE, report_batch_item_failures=True
        )
        self.function.add_event_source(self.event_source)
        self._grant(table, id_secret)
        self.signals = self._signals()

    def _grant(self, table: dynamodb.ITableV2, id_secret: secretsmanager.ISecret) -> None:
        """Its own queues (the event source grants the receives and deletes; the function
        sends its retries and its give-ups), GetItem on tenant items only, and the two
        secrets it reads at cold start (the settings validate the id secrets too)."""
        function = self.function
        self.queue.grant_send_messages(function)
        self.dlq.grant_send_messages(function)
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem"],
                resources=[table.table_arn],
            )
        )
        self.secret.grant_read(function)
        id_secret.grant_read(function)

    def _signals(self) -> Signals:
        function = self.function
        given_up = custom_metric(r.METRIC.WEBHOOKS_GIVEN_UP, SERVICE)
        dead = self.dlq.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=ONE_MINUTE
        )
        oldest = self.queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=ONE_MINUTE
        )
        return Signals(
            alarms=[
                AlarmSpec(
                    "WebhooksGivenUp",
                    given_up,
                    0,
                    1,
                    "webhook deliveries given up after a day of retries (in the webhook DLQ)",
                ),
                AlarmSpec(
                    "WebhookDeadLetters",
                    dead,
                    0,
                    1,
                    "messages in the webhook DLQ (given up, or ones the function cannot read)",
                ),
                AlarmSpec(
                    "WebhookFunctionErrors",
                    function.metric_errors(period=FIVE_MINUTES),
                    0,
                    2,
                    "the webhook delivery function is failing",
                ),
                # Retries are delayed at most 15 minutes: a backlog older than an hour is
                # the function not keeping up, not receivers being down.
                AlarmSpec("WebhookQueueOldest", oldest, 3600, 5, "webhook queue backlog"),
            ],
            rows=[
                [
                    cw.GraphWidget(
                        title="Webhooks (delivered, failed attempts, given up)",
                        left=[
                            custom_metric(r.METRIC.WEBHOOKS_DELIVERED, SERVICE),
                            custom_metric(r.METRIC.WEBHOOK_ATTEMPTS_FAILED, SERVICE),
                            given_up,
                        ],
                        width=12,
                    ),
                    cw.GraphWidget(
                        title="Webhook queue (oldest s; DLQ depth)",
                        left=[oldest],
                        right=[dead],
                        width=12,
                    ),
                ]
            ],
        )
