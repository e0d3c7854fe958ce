"""The AWS clients a worker process uses, built from its settings (endpoint included, so
the local region's moto server works alike). Short timeouts: a stuck call fails as a
transient error instead of eating the Lambda's or the lease's time.

The hot calls (the report store's writes and reads, the queue worker's SQS calls) go
through functions/lean_aws.py instead.

`client` is typed per service, as boto3-stubs types `boto3.client`. The stubs are a dev
dependency only (neither the Lambda asset nor the worker image has them), so they are
imported for the type checker alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, overload

import boto3
from botocore.config import Config

from reportgrid.settings import Settings

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.client import BaseClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kinesis.client import KinesisClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sts.client import STSClient

Service = Literal["dynamodb", "events", "kinesis", "s3", "sqs", "sts", "xray"]

USER_AGENT: Final = "reportgrid-workers"
POOL: Final = 32
MAX_ATTEMPTS: Final = 3  # per call, botocore's standard retry mode (the lean clients alike)
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    # A batch's writes are in flight together (functions.runner.IO_THREADS): a connection
    # each, kept (botocore's default pool of 10 would discard and reconnect).
    max_pool_connections=POOL,
    # The service validates every request anyway (a bad one is a 4xx we never retry);
    # botocore's client-side check of the same costs ~0.3 ms of CPU per DynamoDB call.
    parameter_validation=False,
    # A fixed User-Agent: botocore otherwise rebuilds its ~16-part string (each part
    # sanitized) for every request, a third of a small call's client CPU in a profile.
    user_agent=USER_AGENT,
)


@overload
def client(
    service: Literal["dynamodb"], settings: Settings, *, session: Session | None = None
) -> DynamoDBClient: ...
@overload
def client(
    service: Literal["events"], settings: Settings, *, session: Session | None = None
) -> BaseClient: ...  # no EventBridge stubs installed: functions/events types its calls
@overload
def client(
    service: Literal["xray"], settings: Settings, *, session: Session | None = None
) -> BaseClient: ...  # no X-Ray stubs installed: functions/segments.py types its one call


@overload
def client(
    service: Literal["kinesis"], settings: Settings, *, session: Session | None = None
) -> KinesisClient: ...
@overload
def client(
    service: Literal["s3"], settings: Settings, *, session: Session | None = None
) -> S3Client: ...
@overload
def client(
    service: Literal["sqs"], settings: Settings, *, session: Session | None = None
) -> SQSClient: ...
@overload
def client(
    service: Literal["sts"], settings: Settings, *, session: Session | None = None
) -> STSClient: ...
def client(service: Service, settings: Settings, *, session: Session | None = None) -> BaseClient:
    """A client in the settings' region. `session`: build it from that session (its own
    credentials; a thread that is not the main one needs a session of its own, since
    boto3's default session is not thread-safe) instead of boto3's default session."""
    region, endpoint = settings.region, settings.aws_endpoint_url
    if session is None:
        return boto3.client(service, region_name=region, endpoint_url=endpoint, config=_CONFIG)
    return session.client(service, region_name=region, endpoint_url=endpoint, config=_CONFIG)
