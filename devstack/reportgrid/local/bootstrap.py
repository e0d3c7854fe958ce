"""Create one region's resources on an AWS endpoint (the moto server), from the same names
and key schema as the CDK constructs (reportgrid.resources). Idempotent: running it on a
region that already has them changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from reportgrid import resources as r
from reportgrid.events import DETAIL_TYPES

LOCAL_ACCOUNT = "123456789012"  # moto's default account
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# The local region's one input bucket (context reportgrid:inputBuckets when deployed) and
# the role the workers assume to read it, as deployed (cdk/constructs/input_reader.py;
# moto runs AssumeRole but does not enforce IAM).
LOCAL_INPUT_READER_ROLE = "reportgrid-input-reader"


def local_input_bucket(region: str) -> str:
    return f"reportgrid-inputs-{LOCAL_ACCOUNT}-{region}"


@dataclass(frozen=True, slots=True)
class RegionResources:
    """What exists in one region, and the environment that points a process at it."""

    region: str
    endpoint_url: str
    table_name: str
    stream_name: str
    heavy_queue_url: str
    heavy_dlq_url: str
    standby_queue_url: str
    standby_dlq_url: str
    results_bucket: str
    # The Kinesis on-failure destination and its DLQ (defaults keep older callers working).
    stream_failure_queue_url: str = ""
    stream_failure_dlq_url: str = ""
    input_bucket: str = ""
    input_reader_role_arn: str = ""
    webhook_queue_url: str = ""
    webhook_dlq_url: str = ""

    def environ(self) -> dict[str, str]:
        """Settings variables for a process of this region (secrets and ports excluded)."""
        return {
            r.ENV.REGION: self.region,
            r.ENV.TABLE_NAME: self.table_name,
            r.ENV.TASK_STREAM_NAME: self.stream_name,
            r.ENV.HEAVY_QUEUE_URL: self.heavy_queue_url,
            r.ENV.STANDBY_QUEUE_URL: self.standby_queue_url,
            r.ENV.RESULTS_BUCKET: self.results_bucket,
            r.ENV.AWS_ENDPOINT_URL: self.endpoint_url,
            **(
                {r.ENV.STREAM_FAILURE_QUEUE_URL: self.stream_failure_queue_url}
                if self.stream_failure_queue_url
                else {}
            ),
            **({r.ENV.INPUT_BUCKETS: self.input_bucket} if self.input_bucket else {}),
            **(
                {r.ENV.INPUT_READER_ROLE_ARN: self.input_reader_role_arn}
                if self.input_reader_role_arn
                else {}
            ),
            "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.region,
        }


def client(service: str, region: str, endpoint_url: str) -> Any:
    """A boto3 client for a local region (typed Any: the service is chosen at run time)."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        **LOCAL_CREDENTIALS,
    )


def table_definition(table_name: str = r.TABLE_NAME) -> dict[str, Any]:
    """CreateTable arguments: the key schema, tenant index, stream and billing of the table.
    The CDK data stack declares the same; tests/infra checks that the two agree."""
    return {
        "TableName": table_name,
        "AttributeDefinitions": [
            {"AttributeName": r.PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": r.TENANT_INDEX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": r.TENANT_INDEX_SORT_KEY, "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": r.PARTITION_KEY, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": r.TENANT_INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": r.TENANT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": r.TENANT_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }


def _create_table(region: str, endpoint_url: str) -> None:
    ddb = client("dynamodb", region, endpoint_url)
    try:
        ddb.create_table(**table_definition())
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceInUseException":
            raise
    ddb.get_waiter("table_exists").wait(TableName=r.TABLE_NAME)
    ddb.update_time_to_live(
        TableName=r.TABLE_NAME,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": r.TTL_ATTRIBUTE},
    )


def _create_stream(region: str, endpoint_url: str, shards: int) -> None:
    kinesis = client("kinesis", region, endpoint_url)
    try:
        kinesis.create_stream(StreamName=r.TASK_STREAM_NAME, ShardCount=shards)
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceInUseException":
            raise
    kinesis.get_waiter("stream_exists").wait(StreamName=r.TASK_STREAM_NAME)


def _create_queue_pair(
    sqs: Any,
    name: str,
    dlq_name: str,
    *,
    visibility_timeout: int = r.HEAVY_VISIBILITY_TIMEOUT_SECONDS,
    max_receives: int = r.HEAVY_MAX_RECEIVES,
) -> tuple[str, str]:
    dlq_url = sqs.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "MessageRetentionPeriod": "1209600",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
            ),
        },
    )["QueueUrl"]
    return url, dlq_url


def _create_bucket(region: str, endpoint_url: str, bucket: str) -> None:
    s3 = client("s3", region, endpoint_url)
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def create_region(region: str, endpoint_url: str, *, shards: int = 2) -> RegionResources:
    """Create (or find) every resource of one region and describe them."""
    _create_table(region, endpoint_url)
    _create_stream(region, endpoint_url, shards)
    sqs = client("sqs", region, endpoint_url)
    heavy_url, heavy_dlq_url = _create_queue_pair(sqs, r.HEAVY_QUEUE_NAME, r.HEAVY_DLQ_NAME)
    standby_url, standby_dlq_url = _create_queue_pair(sqs, r.STANDBY_QUEUE_NAME, r.STANDBY_DLQ_NAME)
    failure_url, failure_dlq_url = _create_queue_pair(
        sqs,
        r.STREAM_FAILURE_QUEUE_NAME,
        r.STREAM_FAILURE_DLQ_NAME,
        visibility_timeout=r.STREAM_FAILURE_VISIBILITY_TIMEOUT_SECONDS,
        max_receives=r.STREAM_FAILURE_MAX_RECEIVES,
    )
    webhook_url, webhook_dlq_url = _create_queue_pair(
        sqs,
        r.WEBHOOK_QUEUE_NAME,
        r.WEBHOOK_DLQ_NAME,
        visibility_timeout=r.WEBHOOK_VISIBILITY_TIMEOUT_SECONDS,
        max_receives=r.WEBHOOK_MAX_RECEIVES,
    )
    _create_webhook_rule(region, endpoint_url, sqs, webhook_url)
    # The completion-event publisher's on-failure destination (cdk/constructs/events.py):
    # a plain queue with 14 days' retention; CreateQueue with the same attributes is
    # idempotent.
    sqs.create_queue(
        QueueName=r.EVENTS_FAILURE_QUEUE_NAME, Attributes={"MessageRetentionPeriod": "1209600"}
    )
    bucket = r.results_bucket_name(LOCAL_ACCOUNT, region)
    _create_bucket(region, endpoint_url, bucket)
    _create_bucket(region, endpoint_url, local_input_bucket(region))
    reader_arn = _create_input_reader_role(region, endpoint_url)
    return RegionResources(
        region=region,
        endpoint_url=endpoint_url,
        table_name=r.TABLE_NAME,
        stream_name=r.TASK_STREAM_NAME,
        heavy_queue_url=heavy_url,
        heavy_dlq_url=heavy_dlq_url,
        standby_queue_url=standby_url,
        standby_dlq_url=standby_dlq_url,
        results_bucket=bucket,
        stream_failure_queue_url=failure_url,
        stream_failure_dlq_url=failure_dlq_url,
        input_bucket=local_input_bucket(region),
        input_reader_role_arn=reader_arn,
        webhook_queue_url=webhook_url,
        webhook_dlq_url=webhook_dlq_url,
    )


def webhook_event_pattern() -> dict[str, Any]:
    """The webhook rule's pattern, as cdk/constructs/webhooks.py declares it."""
    return {"source": [r.EVENT_SOURCE], "detail-type": list(DETAIL_TYPES.values())}


def _create_webhook_rule(region: str, endpoint_url: str, sqs: Any, queue_url: str) -> None:
    """The completion-event bus (if the events component has not made it) and the rule that
    puts every terminal event on the webhook queue; moto delivers to an SQS target within
    PutEvents."""
    events = client("events", region, endpoint_url)
    try:
        events.create_event_bus(Name=r.EVENT_BUS_NAME)
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name=r.WEBHOOK_RULE_NAME,
        EventBusName=r.EVENT_BUS_NAME,
        EventPattern=json.dumps(webhook_event_pattern()),
        State="ENABLED",
    )
    events.put_targets(
        Rule=r.WEBHOOK_RULE_NAME,
        EventBusName=r.EVENT_BUS_NAME,
        Targets=[{"Id": "webhooks", "Arn": queue_arn}],
    )


def _create_input_reader_role(region: str, endpoint_url: str) -> str:
    iam = client("iam", region, endpoint_url)
    try:
        return str(iam.get_role(RoleName=LOCAL_INPUT_READER_ROLE)["Role"]["Arn"])
    except ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchEntity":
            raise
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{LOCAL_ACCOUNT}:root"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }
    role = iam.create_role(
        RoleName=LOCAL_INPUT_READER_ROLE, AssumeRolePolicyDocument=json.dumps(trust)
    )
    return str(role["Role"]["Arn"])
