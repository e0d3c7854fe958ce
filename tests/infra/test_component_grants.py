"""Each component's principals hold exactly the permissions their code uses: the whole
inventory of a regional stack's IAM policies, as (action, resource) pairs, against the list
below, where each line names the code path that needs it. A grant added to a component, or
widened by a CDK helper, fails here as surely as one lost (tests/infra/test_runtime_grants.py
records some of these calls from the code itself)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pytest

from reportgrid import resources as r
from tests.infra.conftest import ACCOUNT, INPUT_BUCKET, Synthesized, flatten

Pair = tuple[str, str]

# The action groups the CDK grant helpers write.
TABLE_READ_WRITE = (
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
)
QUEUE_SEND = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage")
QUEUE_CONSUME = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
)
# A Kinesis event source's reads (the Lambda service polls with the function's role).
STREAM_EVENT_SOURCE = (
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamConsumer",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:ListStreams",
    "kinesis:SubscribeToShard",
)
BUCKET_READ = ("s3:GetBucket*", "s3:GetObject*", "s3:List*")
BUCKET_READ_WRITE = (
    *BUCKET_READ,
    "s3:Abort*",
    "s3:DeleteObject*",
    "s3:PutObject",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
)
SECRET_READ = ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue")
TRACING = ("xray:PutTelemetryRecords", "xray:PutTraceSegments")
IMAGE_PULL = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
ASSUME_READER = ("sts:AssumeRole", "sts:TagSession")


def on(resources: Iterable[str], actions: Iterable[str]) -> set[Pair]:
    return {(action, resource) for resource in resources for action in actions}


def expected(region: str, peer: str) -> dict[str, set[Pair]]:
    """The permissions of every role of `region`'s stack, by component."""
    table = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{r.TABLE_NAME}"
    tables = (table, f"{table}/index/*")
    results = f"arn:aws:s3:::{r.results_bucket_name(ACCOUNT, region)}"
    replica = f"arn:aws:s3:::{r.results_bucket_name(ACCOUNT, peer)}"
    stream = f"arn:aws:kinesis:{region}:{ACCOUNT}:stream/{r.TASK_STREAM_NAME}"

    def queue(name: str, where: str = region) -> str:
        return f"arn:aws:sqs:{where}:{ACCOUNT}:{name}"

    id_secrets = (
        f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{r.ID_SECRETS_SECRET_NAME}-??????"
    )
    cache_url = "<CacheUrlSecret>"
    reader = "<InputReaderRole>"
    repository = (
        f"arn:aws:ecr:{region}:{ACCOUNT}:repository/cdk-hnb659fds-container-assets-"
        f"{ACCOUNT}-{region}"
    )

    def execution_role(logs: str) -> set[Pair]:
        # ECS pulls the asset image, writes the container's logs and injects the secrets.
        return (
            on([repository], IMAGE_PULL)
            | on(["*"], ["ecr:GetAuthorizationToken"])
            | on([logs], ["logs:CreateLogStream", "logs:PutLogEvents"])
            | on([id_secrets, cache_url], SECRET_READ)
        )

    report_runner = (
        on(tables, TABLE_READ_WRITE)  # functions/store.py: reports and their state
        | on([results, f"{results}/*"], BUCKET_READ_WRITE)  # functions/runner.py: results
        | on([reader], ASSUME_READER)  # functions/input_access.py: inputs as the tenant
    )
    return {
        # --- edge (grpc_edge/)
        "EdgeTaskTaskRole": (
            on(tables, TABLE_READ_WRITE)  # grpc_edge/store.py
            # producer.py PutRecords; dependency_health.py DescribeStreamSummary
            | on([stream], ["kinesis:ListShards", "kinesis:PutRecord", "kinesis:PutRecords"])
            | on([stream], ["kinesis:DescribeStreamSummary"])
            # DownloadReport, from the replica when the own bucket fails
            | on([results, f"{results}/*", replica, f"{replica}/*"], BUCKET_READ)
            # DeleteReport: every version of a result, in both buckets
            | on(
                [f"{results}/{r.RESULTS_KEY_PREFIX}*", f"{replica}/{r.RESULTS_KEY_PREFIX}*"],
                ["s3:DeleteObject*"],
            )
            | on([queue(r.STANDBY_QUEUE_NAME, peer)], QUEUE_SEND)  # multi-region submits
        ),
        "EdgeTaskExecutionRole": execution_role("<EdgeLogs>"),
        # --- workers (workers/functions/)
        "StreamWorkerFunctionServiceRole": (
            report_runner
            | on(["*"], TRACING)
            | on([stream], STREAM_EVENT_SOURCE)
            # heavy kinds are forwarded and tasks over their tenant's max_running put off
            # (functions/deferral.py); the event source sends given-up batches
            | on([queue(r.HEAVY_QUEUE_NAME), queue(r.STREAM_FAILURE_QUEUE_NAME)], QUEUE_SEND)
            | on([id_secrets, cache_url], SECRET_READ)  # read by ARN at cold start
        ),
        "QueueWorkerTaskTaskRole": (
            report_runner
            # queue_worker/worker.py: the heavy queue, and drain_dlq on its DLQ
            | on([queue(r.HEAVY_QUEUE_NAME), queue(r.HEAVY_DLQ_NAME)], QUEUE_CONSUME)
            # a task still over its tenant's max_running is put off again as a new, delayed
            # message (functions/deferral.py)
            | on([queue(r.HEAVY_QUEUE_NAME)], QUEUE_SEND)
            | on(["*"], TRACING)  # the X-Ray daemon sidecar sends the task's segments
        ),
        "QueueWorkerTaskExecutionRole": execution_role("<QueueWorkerLogs>"),
        "StandbyWorkerTaskTaskRole": (
            report_runner
            # standby/worker.py: receives, extends, deletes and re-queues mirrored tasks
            | on([queue(r.STANDBY_QUEUE_NAME)], (*QUEUE_CONSUME, "sqs:SendMessage"))
            | on(["*"], TRACING)  # the X-Ray daemon sidecar sends the task's segments
        ),
        "StandbyWorkerTaskExecutionRole": execution_role("<StandbyWorkerLogs>"),
        "InputReaderRole": on(
            [f"arn:aws:s3:::{INPUT_BUCKET}/tenants/${{aws:PrincipalTag/tenant}}/*"],
            ["s3:GetObject"],
        ),
        "StreamFailureDrainFunctionServiceRole": (
            on(["*"], TRACING)
            | on([queue(r.STREAM_FAILURE_QUEUE_NAME)], QUEUE_CONSUME)  # its event source
            # stream_failures: reads the given-up records back, re-drives, updates reports
            | on(
                [stream],
                ["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords"],
            )
            | on([queue(r.HEAVY_QUEUE_NAME)], QUEUE_SEND)
            | on(tables, TABLE_READ_WRITE)
            | on([id_secrets], SECRET_READ)
        ),
        # --- completion events (functions/events; cdk/constructs/events.py)
        "CompletionEventsFunctionServiceRole": (
            on(["*"], TRACING)
            | on(["<CompletionEventsBus>"], ["events:PutEvents"])  # events/publish.py
            # its event source polls the table replica's stream (generated label)
            | on(
                [f"{table}/stream/*"],
                [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
            )
            | on([queue(r.EVENTS_FAILURE_QUEUE_NAME)], QUEUE_SEND)  # given-up batches
            | on([id_secrets], SECRET_READ)  # settings at cold start
        ),
        # the deploy-time DescribeTable that finds that stream's ARN
        "AWS679f53fac002430cb0da5b7982bd2287ServiceRole": on([table], ["dynamodb:DescribeTable"]),
        # --- webhooks (functions/webhooks; cdk/constructs/webhooks.py)
        "WebhooksFunctionServiceRole": (
            on(["*"], TRACING)
            | on([queue(r.WEBHOOK_QUEUE_NAME)], QUEUE_CONSUME)  # its event source
            # handler.py: retries re-queued with a delay, give-ups to the DLQ
            | on([queue(r.WEBHOOK_QUEUE_NAME), queue(r.WEBHOOK_DLQ_NAME)], QUEUE_SEND)
            | on([table], ["dynamodb:GetItem"])  # tenant items: default URL, secret version
            | on(
                [
                    id_secrets,
                    f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:"
                    f"{r.WEBHOOK_SECRET_NAME}-??????",
                ],
                SECRET_READ,
            )
        ),
        # --- the scheduler (functions/scheduler; cdk/constructs/scheduler.py)
        "SchedulerFunctionServiceRole": (
            on(["*"], TRACING)
            # schedule, report and tenant items; idempotency claims and the fire's report;
            # the schedule's Update and its due item's Put/Delete (TransactWriteItems)
            | on(
                [table],
                [
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
            )
            | on([f"{table}/index/{r.TENANT_INDEX_NAME}"], ["dynamodb:Query"])  # due partitions
            | on([stream], ["kinesis:PutRecords"])  # the fires' tasks
            | on([id_secrets], SECRET_READ)  # settings at cold start
        ),
        # EventBridge Scheduler's role: that one function, and the target's DLQ
        "SchedulerRole": (
            on(["<SchedulerFunction>"], ["lambda:InvokeFunction"])
            | on([queue(r.SCHEDULER_DLQ_NAME)], ["sqs:SendMessage"])
        ),
        # --- multi-region
        "TaskMirrorFunctionServiceRole": (
            on(["*"], TRACING)
            | on([stream], STREAM_EVENT_SOURCE)
            # functions/mirror: to the peer's standby; the event source's given-up batches
            | on(
                [queue(r.STANDBY_QUEUE_NAME, peer), queue(r.STREAM_FAILURE_QUEUE_NAME)], QUEUE_SEND
            )
            | on([id_secrets], SECRET_READ)
        ),
        # --- storage: S3 replicates results to the neighbours' buckets
        "ResultsBucketReplicationRole": (
            on([results], ["s3:GetReplicationConfiguration", "s3:ListBucket"])
            | on(
                [f"{results}/*"],
                [
                    "s3:GetObjectVersionAcl",
                    "s3:GetObjectVersionForReplication",
                    "s3:GetObjectVersionTagging",
                ],
            )
            | on([f"{replica}/*"], ["s3:ReplicateDelete", "s3:ReplicateObject", "s3:ReplicateTags"])
        ),
        # --- network: VPC flow logs
        "NetworkVpcFlowLogIAMRole": on(
            ["<NetworkFlowLogs>"],
            ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
        ),
    }


_HASH = re.compile(r"[0-9A-F]{8}$")


def _labels(resources: dict[str, Any], region: str) -> dict[str, str]:
    """A readable name per logical id: the ARN of a named queue, stream or bucket, else the
    logical id without its hash."""
    labels: dict[str, str] = {}
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::SQS::Queue" and "QueueName" in props:
            labels[logical_id] = f"arn:aws:sqs:{region}:{ACCOUNT}:{props['QueueName']}"
        elif kind == "AWS::Kinesis::Stream":
            labels[logical_id] = f"arn:aws:kinesis:{region}:{ACCOUNT}:stream/{props['Name']}"
        elif kind == "AWS::S3::Bucket" and isinstance(props.get("BucketName"), str):
            labels[logical_id] = f"arn:aws:s3:::{props['BucketName']}"
        else:
            labels[logical_id] = f"<{_HASH.sub('', logical_id)}>"
    return labels


def _resource_text(resource: Any, region: str, labels: dict[str, str]) -> str:
    text = flatten(resource, region)
    text = text if isinstance(text, str) else json.dumps(text)

    def name(match: re.Match[str]) -> str:
        return labels[match["id"]]

    text = re.sub(r'\{\{Fn::GetAtt:\["(?P<id>\w+)", "Arn"\]\}\}', name, text)
    return re.sub(r"\{\{ref:(?P<id>\w+)\}\}", name, text)


def granted(synth: Synthesized, region: str) -> dict[str, set[Pair]]:
    """Every (action, resource) an AWS::IAM::Policy of the stack allows, by role."""
    stack = synth.deployment.regions[region]
    resources = json.loads((synth.outdir / stack.template_file).read_text())["Resources"]
    labels = _labels(resources, region)
    found: dict[str, set[Pair]] = {}
    for policy in resources.values():
        if policy["Type"] != "AWS::IAM::Policy":
            continue
        pairs: set[Pair] = set()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            # Only plain allows: a deny or a condition would need reading, not listing.
            assert statement["Effect"] == "Allow", statement
            assert "Condition" not in statement, statement
            actions = statement["Action"]
            targets = statement["Resource"]
            pairs |= on(
                (_resource_text(t, region, labels) for t in _as_list(targets)),
                _as_list(actions),
            )
        for role in policy["Properties"]["Roles"]:
            found.setdefault(_HASH.sub("", role["Ref"]), set()).update(pairs)
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize(
    ("region", "peer"), [("eu-west-1", "us-east-1"), ("us-east-1", "eu-west-1")]
)
def test_every_role_holds_exactly_what_its_code_uses(
    synth: Synthesized, region: str, peer: str
) -> None:
    found = granted(synth, region)
    want = expected(region, peer)
    assert set(found) == set(want), "roles with policies"
    problems = [
        f"{role}: {'extra' if pair in found[role] else 'missing'} {pair}"
        for role in want
        for pair in sorted(found[role] ^ want[role])
    ]
    assert not problems, "\n".join(problems)
