"""Each component's calls judged against the REAL synthesized template (tests/unit/devstack/
local_synth.py): every call the code makes on its happy path is allowed (listed from the
code: file and function next to each), and targeted mutations are denied with AWS's
message. The calls carry the parameters the code passes; the local region's names
(reportgrid.resources, bootstrap) stand in for the deployed ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reportgrid import resources as r
from reportgrid.local.bootstrap import LOCAL_ACCOUNT, LOCAL_INPUT_READER_ROLE, local_input_bucket
from reportgrid.local.iam.actions import Call
from reportgrid.local.iam.denials import AccessDenied
from reportgrid.local.iam.enforce import build_enforcer
from reportgrid.local.iam.hook import Enforcer

REGION, PEER = "us-east-1", "eu-west-1"
MOTO = "http://127.0.0.1:5000"
TABLE = r.TABLE_NAME
STREAM = r.TASK_STREAM_NAME
RESULTS = r.results_bucket_name(LOCAL_ACCOUNT, REGION)
PEER_RESULTS = r.results_bucket_name(LOCAL_ACCOUNT, PEER)
INPUTS = local_input_bucket(REGION)
READER = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{LOCAL_INPUT_READER_ROLE}"
ID_SECRET = (
    f"arn:aws:secretsmanager:{REGION}:{LOCAL_ACCOUNT}:secret:{r.ID_SECRETS_SECRET_NAME}-Ab12Cd"
)
RESULT_KEY = r.result_object_key("r-1")
KEY = {"pk": {"S": "report#r-1"}}
VERSIONS = {"Objects": [{"Key": RESULT_KEY, "VersionId": "v1"}], "Quiet": True}


def queue(name: str) -> str:
    return f"{MOTO}/{LOCAL_ACCOUNT}/{name}"


def call(service: str, operation: str, *, region: str = REGION, **params: Any) -> Call:
    return Call(service, operation, params, region, LOCAL_ACCOUNT)


def enforcer(assembly: Path, **component: Any) -> Enforcer:
    return build_enforcer(assembly, region=REGION, **component)


def assert_allowed(judge: Enforcer, calls: list[Call], key: str | None = None) -> None:
    denied = [(c.operation, d.message) for c in calls if (d := judge.judge(c, key)) is not None]
    assert denied == []


def assert_denied(judge: Enforcer, c: Call, *text: str, key: str | None = None) -> AccessDenied:
    denied = judge.judge(c, key)
    assert denied is not None, f"{c.service}:{c.operation} {c.params} was allowed"
    for part in text:
        assert part in denied.message
    return denied


def assume_reader(judge: Enforcer, tenant: str) -> str:
    """AssumeRole as workers/functions/input_access.py does it, allowed, and the session
    recorded as moto would answer it; returns the session's access key."""
    assume = call(
        "sts",
        "AssumeRole",
        RoleArn=READER,
        RoleSessionName=f"reportgrid-input-{tenant}",
        DurationSeconds=3600,
        Tags=[{"Key": r.INPUT_TENANT_TAG, "Value": tenant}],
    )
    assert_allowed(judge, [assume])
    key = f"ASIA{tenant.upper()}"
    judge.observe(assume, {"Credentials": {"AccessKeyId": key}})
    return key


# The workers' shared calls: functions/store.py (ReportStore), reportgrid/results.py,
# functions/runner.py (delete_result_object).
WORKER_STORE = [
    call("dynamodb", "GetItem", TableName=TABLE, Key=KEY, ConsistentRead=True),
    call("dynamodb", "BatchGetItem", RequestItems={TABLE: {"Keys": [KEY], "ConsistentRead": True}}),
    call("dynamodb", "PutItem", TableName=TABLE, Item=KEY, ConditionExpression="x"),
    call("dynamodb", "DeleteItem", TableName=TABLE, Key=KEY),
    call("s3", "PutObject", Bucket=RESULTS, Key=RESULT_KEY, Body=b"x"),
    call("s3", "ListObjectVersions", Bucket=RESULTS, Prefix=RESULT_KEY),
    call("s3", "DeleteObjects", Bucket=RESULTS, Delete=VERSIONS),
]


def kinesis_event_source(judge: Enforcer) -> None:
    """The local Kinesis runner's reads (as Lambda's event source, under the function's
    role): reportgrid/local/kinesis_runner.py, and its on-failure destination."""
    iterator = call(
        "kinesis", "GetShardIterator", StreamName=STREAM, ShardId="s-0", ShardIteratorType="LATEST"
    )
    assert_allowed(
        judge,
        [
            call("kinesis", "DescribeStreamSummary", StreamName=STREAM),
            call("kinesis", "ListShards", StreamName=STREAM),
            iterator,
            call(
                "sqs", "SendMessage", QueueUrl=queue(r.STREAM_FAILURE_QUEUE_NAME), MessageBody="{}"
            ),
        ],
    )
    judge.observe(iterator, {"ShardIterator": "iterator-1"})
    records = call("kinesis", "GetRecords", ShardIterator="iterator-1", Limit=100)
    assert_allowed(judge, [records])
    judge.observe(records, {"NextShardIterator": "iterator-2"})
    assert_allowed(judge, [call("kinesis", "GetRecords", ShardIterator="iterator-2")])


# --- the edge (ECS task role, container "edge") ---------------------------------------------


def test_the_edges_calls_are_allowed(assembly: Path) -> None:
    edge = enforcer(assembly, container="edge")
    index = {"TableName": TABLE, "IndexName": r.TENANT_INDEX_NAME, "KeyConditionExpression": "k"}
    assert_allowed(
        edge,
        [
            # grpc_edge/auth.py (API keys), store.py (reads, cancel, delete, health)
            call("dynamodb", "GetItem", TableName=TABLE, Key=KEY),
            call("dynamodb", "BatchGetItem", RequestItems={TABLE: {"Keys": [KEY]}}),
            call("dynamodb", "Query", **index),
            call("dynamodb", "PutItem", TableName=TABLE, Item=KEY),
            call("dynamodb", "DeleteItem", TableName=TABLE, Key=KEY),
            # producer.py, server.py (health)
            call("kinesis", "PutRecords", StreamName=STREAM, Records=[]),
            call("kinesis", "DescribeStreamSummary", StreamName=STREAM),
            # service.py: download (own bucket, then the peer's replica), delete versions
            call("s3", "GetObject", Bucket=RESULTS, Key=RESULT_KEY),
            call("s3", "GetObject", region=PEER, Bucket=PEER_RESULTS, Key=RESULT_KEY),
            call("s3", "ListObjectVersions", Bucket=RESULTS, Prefix=RESULT_KEY),
            call("s3", "DeleteObjects", Bucket=RESULTS, Delete=VERSIONS),
            call("s3", "ListObjectVersions", region=PEER, Bucket=PEER_RESULTS, Prefix=RESULT_KEY),
            call("s3", "DeleteObjects", region=PEER, Bucket=PEER_RESULTS, Delete=VERSIONS),
            # peer.py: multi-region submits and the ping, in the peer's standby queue
            call(
                "sqs",
                "SendMessageBatch",
                region=PEER,
                QueueUrl=queue(r.STANDBY_QUEUE_NAME),
                Entries=[],
            ),
            call(
                "sqs",
                "GetQueueAttributes",
                region=PEER,
                QueueUrl=queue(r.STANDBY_QUEUE_NAME),
                AttributeNames=["ApproximateNumberOfMessages"],
            ),
        ],
    )


def test_the_edge_may_not_touch_what_it_has_no_grant_for(assembly: Path) -> None:
    edge = enforcer(assembly, container="edge")
    heavy = call("sqs", "SendMessage", QueueUrl=queue(r.HEAVY_QUEUE_NAME), MessageBody="x")
    denied = assert_denied(
        edge,
        heavy,
        "User: arn:aws:sts::123456789012:assumed-role/EdgeTaskTaskRole",
        "is not authorized to perform: sqs:sendmessage on resource: "
        f"arn:aws:sqs:{REGION}:{LOCAL_ACCOUNT}:{r.HEAVY_QUEUE_NAME} "
        "because no identity-based policy allows the sqs:sendmessage action",
    )
    assert (denied.code, denied.status) == ("AccessDenied", 403)
    # Deletes only under results/, reads none of the inputs, no secrets, no STS
    assert_denied(
        edge, call("s3", "DeleteObject", Bucket=RESULTS, Key="other/x"), "s3:DeleteObject"
    )
    assert_denied(edge, call("s3", "GetObject", Bucket=INPUTS, Key="tenants/a/x"), "s3:GetObject")
    assert_denied(edge, call("secretsmanager", "GetSecretValue", SecretId=ID_SECRET))
    assume = call(
        "sts",
        "AssumeRole",
        RoleArn=READER,
        RoleSessionName="x1",
        Tags=[{"Key": "tenant", "Value": "a"}],
    )
    assert_denied(edge, assume, "sts:AssumeRole", "because no resource-based policy allows")
    # The local region's own table in the peer region is not the edge's
    assert_denied(edge, call("dynamodb", "PutItem", region=PEER, TableName=TABLE, Item=KEY))


def test_the_edges_table_calls_deny_as_dynamodb_does(assembly: Path) -> None:
    edge = enforcer(assembly, container="edge")
    denied = assert_denied(
        edge,
        call("dynamodb", "PutItem", TableName="another-table", Item=KEY),
        "dynamodb:PutItem on resource: "
        f"arn:aws:dynamodb:{REGION}:{LOCAL_ACCOUNT}:table/another-table",
    )
    assert (denied.code, denied.status) == ("AccessDeniedException", 400)


# --- the queue worker and the standby (ECS task roles) --------------------------------------


def test_the_queue_workers_calls_are_allowed(assembly: Path) -> None:
    worker = enforcer(assembly, container="worker")
    heavy, dlq = queue(r.HEAVY_QUEUE_NAME), queue(r.HEAVY_DLQ_NAME)
    receipt = {"ReceiptHandle": "h"}
    assert_allowed(
        worker,
        [
            # functions/process.py, consumer.py, queue_worker/worker.py (DLQ drain)
            call("sqs", "ReceiveMessage", QueueUrl=heavy, MaxNumberOfMessages=1),
            call("sqs", "DeleteMessage", QueueUrl=heavy, **receipt),
            call("sqs", "ChangeMessageVisibility", QueueUrl=heavy, VisibilityTimeout=60, **receipt),
            call("sqs", "GetQueueAttributes", QueueUrl=heavy, AttributeNames=["RedrivePolicy"]),
            call(
                "sqs",
                "GetQueueUrl",
                QueueName=r.HEAVY_DLQ_NAME,
                QueueOwnerAWSAccountId=LOCAL_ACCOUNT,
            ),
            call("sqs", "ReceiveMessage", QueueUrl=dlq, WaitTimeSeconds=0),
            call("sqs", "ChangeMessageVisibility", QueueUrl=dlq, VisibilityTimeout=60, **receipt),
            *WORKER_STORE,
        ],
    )
    tenant = assume_reader(worker, "acme")
    # functions/runner.py download_capped, as the tenant's session
    inputs = call("s3", "GetObject", Bucket=INPUTS, Key="tenants/acme/sales.csv")
    assert_allowed(worker, [inputs], key=tenant)


def test_the_standbys_calls_are_allowed(assembly: Path) -> None:
    standby = enforcer(assembly, container="standby")
    mine = queue(r.STANDBY_QUEUE_NAME)
    assert_allowed(
        standby,
        [
            call("sqs", "ReceiveMessage", QueueUrl=mine),
            call("sqs", "DeleteMessage", QueueUrl=mine, ReceiptHandle="h"),
            call(
                "sqs",
                "ChangeMessageVisibility",
                QueueUrl=mine,
                ReceiptHandle="h",
                VisibilityTimeout=5,
            ),
            # standby/worker.py _later: a delayed copy
            call("sqs", "SendMessage", QueueUrl=mine, MessageBody="x", DelaySeconds=30),
            # standby/heartbeat.py
            call("dynamodb", "PutItem", TableName=TABLE, Item={"pk": {"S": "region#us-east-1"}}),
            call("dynamodb", "GetItem", TableName=TABLE, Key={"pk": {"S": "region#eu-west-1"}}),
            *WORKER_STORE,
        ],
    )


def test_the_standby_drains_no_heavy_queue(assembly: Path) -> None:
    standby = enforcer(assembly, container="standby")
    assert_denied(
        standby,
        call("sqs", "ReceiveMessage", QueueUrl=queue(r.HEAVY_QUEUE_NAME)),
        "sqs:receivemessage",
    )
    assert_denied(
        standby, call("sqs", "SendMessage", QueueUrl=queue(r.HEAVY_QUEUE_NAME), MessageBody="x")
    )


# --- the Lambda functions --------------------------------------------------------------------


def redis_secret_id(assembly: Path) -> str:
    template = json.loads((assembly / f"Reportgrid-{REGION}.template.json").read_text())
    (found,) = (str(k) for k in template["Resources"] if k.startswith("CacheUrlSecret"))
    return found


def test_the_stream_workers_calls_are_allowed(assembly: Path) -> None:
    redis_secret = f"arn:aws:secretsmanager:{REGION}:{LOCAL_ACCOUNT}:secret:redis-url-Xy12Zw"
    worker = enforcer(
        assembly,
        function="functions.stream_worker.handler:handler",
        physical={redis_secret_id(assembly): redis_secret},
    )
    kinesis_event_source(worker)
    assert_allowed(
        worker,
        [
            # reportgrid/settings.py: the secrets the function reads by ARN at cold start
            call("secretsmanager", "GetSecretValue", SecretId=ID_SECRET),
            call("secretsmanager", "GetSecretValue", SecretId=redis_secret),
            # stream_worker/forward.py: heavy kinds go to the heavy queue
            call("sqs", "SendMessageBatch", QueueUrl=queue(r.HEAVY_QUEUE_NAME), Entries=[]),
            *WORKER_STORE,
        ],
    )
    tenant = assume_reader(worker, "acme")
    assert_allowed(
        worker, [call("s3", "GetObject", Bucket=INPUTS, Key="tenants/acme/a.csv")], key=tenant
    )


def test_the_stream_worker_reads_inputs_only_as_the_tenant(assembly: Path) -> None:
    worker = enforcer(assembly, function="functions.stream_worker.handler.handler")
    tenant = assume_reader(worker, "acme")
    other = call("s3", "GetObject", Bucket=INPUTS, Key="tenants/other/a.csv")
    assert_denied(
        worker,
        other,
        f"User: arn:aws:sts::{LOCAL_ACCOUNT}:assumed-role/{LOCAL_INPUT_READER_ROLE}/"
        "reportgrid-input-acme",
        f'on resource: "arn:aws:s3:::{INPUTS}/tenants/other/a.csv" because no identity-based',
        key=tenant,
    )
    # The session is the reader role only: no results, no table
    assert_denied(worker, call("s3", "GetObject", Bucket=RESULTS, Key=RESULT_KEY), key=tenant)
    assert_denied(worker, call("dynamodb", "GetItem", TableName=TABLE, Key=KEY), key=tenant)
    # Its own role reads no input at all
    assert_denied(worker, call("s3", "GetObject", Bucket=INPUTS, Key="tenants/acme/a.csv"))
    # The trust policy wants exactly one, non-empty tenant tag
    untagged = call("sts", "AssumeRole", RoleArn=READER, RoleSessionName="x1")
    assert_denied(worker, untagged, "sts:AssumeRole", "because no resource-based policy allows")
    extra = call(
        "sts",
        "AssumeRole",
        RoleArn=READER,
        RoleSessionName="x1",
        Tags=[{"Key": "tenant", "Value": "a"}, {"Key": "admin", "Value": "yes"}],
    )
    assert_denied(worker, extra, "sts:AssumeRole")


def test_a_secret_the_evaluator_cannot_name_is_denied(assembly: Path) -> None:
    # Without the local ARN of the generated-name Redis secret its grant cannot match.
    worker = enforcer(assembly, function="functions.stream_worker.handler.handler")
    redis_secret = f"arn:aws:secretsmanager:{REGION}:{LOCAL_ACCOUNT}:secret:redis-url-Xy12Zw"
    assert_denied(
        worker,
        call("secretsmanager", "GetSecretValue", SecretId=redis_secret),
        "secretsmanager:GetSecretValue",
    )
    # A secret given by name or by a partial ARN (no random suffix), as the template's
    # REPORTGRID_ID_SECRETS_ARN does, is judged by its full ARN: the grant allows any
    # suffix of the name (`reportgrid/id-secrets-??????`), so both are allowed...
    partial = f"arn:aws:secretsmanager:{REGION}:{LOCAL_ACCOUNT}:secret:{r.ID_SECRETS_SECRET_NAME}"
    assert_allowed(
        worker,
        [
            call("secretsmanager", "GetSecretValue", SecretId=r.ID_SECRETS_SECRET_NAME),
            call("secretsmanager", "GetSecretValue", SecretId=partial),
        ],
    )
    # ...and a secret the role is not granted is not, however it is named.
    assert_denied(
        worker,
        call("secretsmanager", "GetSecretValue", SecretId="reportgrid/other"),
        "secretsmanager:GetSecretValue",
    )


def test_the_mirrors_calls_are_allowed_and_nothing_more(assembly: Path) -> None:
    mirror = enforcer(assembly, function="functions.mirror.handler.handler")
    kinesis_event_source(mirror)
    peer_standby = call(
        "sqs", "SendMessageBatch", region=PEER, QueueUrl=queue(r.STANDBY_QUEUE_NAME), Entries=[]
    )
    assert_allowed(
        mirror, [call("secretsmanager", "GetSecretValue", SecretId=ID_SECRET), peer_standby]
    )
    assert_denied(
        mirror, call("dynamodb", "PutItem", TableName=TABLE, Item=KEY), "dynamodb:PutItem"
    )
    assert_denied(
        mirror, call("sqs", "SendMessage", QueueUrl=queue(r.STANDBY_QUEUE_NAME), MessageBody="x")
    )


def test_the_stream_failure_drains_calls_are_allowed(assembly: Path) -> None:
    drain = enforcer(assembly, function="functions.stream_failures.handler.handler")
    failed = queue(r.STREAM_FAILURE_QUEUE_NAME)
    iterator = call(
        "kinesis",
        "GetShardIterator",
        StreamName=STREAM,
        ShardId="s-0",
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber="1",
    )
    assert_allowed(
        drain,
        [
            # the SQS event source (reportgrid/local/sqs_source.py, under the function's role)
            call("sqs", "ReceiveMessage", QueueUrl=failed),
            call("sqs", "DeleteMessage", QueueUrl=failed, ReceiptHandle="h"),
            call(
                "sqs",
                "ChangeMessageVisibility",
                QueueUrl=failed,
                ReceiptHandle="h",
                VisibilityTimeout=1,
            ),
            call("secretsmanager", "GetSecretValue", SecretId=ID_SECRET),
            # stream_failures/redrive.py
            iterator,
            call("sqs", "SendMessageBatch", QueueUrl=queue(r.HEAVY_QUEUE_NAME), Entries=[]),
            call("dynamodb", "GetItem", TableName=TABLE, Key=KEY),
            call("dynamodb", "BatchGetItem", RequestItems={TABLE: {"Keys": [KEY]}}),
            call("dynamodb", "PutItem", TableName=TABLE, Item=KEY),
        ],
    )
    drain.observe(iterator, {"ShardIterator": "it-9"})
    assert_allowed(drain, [call("kinesis", "GetRecords", ShardIterator="it-9")])
    # A shard iterator it never got: which stream is unknown, fail-closed
    assert_denied(
        drain, call("kinesis", "GetRecords", ShardIterator="forged"), "cannot tell the resource"
    )
    assert_denied(drain, call("s3", "PutObject", Bucket=RESULTS, Key=RESULT_KEY), "s3:PutObject")


# --- fail-closed and resource policies --------------------------------------------------------


def test_an_operation_without_a_mapping_is_denied(assembly: Path) -> None:
    worker = enforcer(assembly, container="worker")
    denied = assert_denied(
        worker,
        call("dynamodb", "DeleteTable", TableName=TABLE),
        "dynamodb:DeleteTable",
        "no mapping for this operation",
    )
    assert denied.code == "AccessDeniedException"


def test_plain_http_is_denied_by_the_bucket_and_queue_policies(assembly: Path) -> None:
    worker = build_enforcer(assembly, region=REGION, container="worker", secure_transport=False)
    assert_denied(
        worker,
        call("s3", "PutObject", Bucket=RESULTS, Key=RESULT_KEY),
        "with an explicit deny in a resource-based policy",
    )
    assert_denied(
        worker,
        call("sqs", "ReceiveMessage", QueueUrl=queue(r.HEAVY_QUEUE_NAME)),
        "with an explicit deny in a resource-based policy",
    )
    # The table has no resource policy: the identity-based grant stands
    assert_allowed(worker, [call("dynamodb", "GetItem", TableName=TABLE, Key=KEY)])


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_every_region_has_every_component(assembly: Path, region: str) -> None:
    components: list[dict[str, Any]] = [
        {"container": "edge"},
        {"container": "worker"},
        {"container": "standby"},
        {"function": "functions.stream_worker.handler.handler"},
        {"function": "functions.mirror.handler.handler"},
        {"function": "functions.stream_failures.handler.handler"},
    ]
    for component in components:
        found = build_enforcer(assembly, region=region, **component)
        assert found.default.role is not None
        assert found.default.role.statements
