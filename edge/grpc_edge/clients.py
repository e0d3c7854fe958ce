"""The process's AWS and Redis clients: created once at start-up, shared by every request,
closed on shutdown. Tests may replace any of them (e.g. wrap the Kinesis client to inject
PutRecords partial failures) before the server is built.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aioboto3
import aiobotocore.session
import redis.asyncio as aioredis
from aiobotocore.config import AioConfig

from grpc_edge.aws_json import AwsJsonClient
from grpc_edge.kinesis_writer import KinesisWriter
from reportgrid.settings import Settings

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_kinesis.client import KinesisClient
    from types_aiobotocore_s3.client import S3Client

# One connection pool per client; large enough for thousands of concurrent requests.
_POOL = 256
_REDIS_POOL = 1024
# Redis must answer fast or be bypassed: the breaker treats a slow answer as a failure.
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25


def _config(attempts: int, read_timeout: float, *, validate: bool = True) -> AioConfig:
    return AioConfig(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=2,
        read_timeout=read_timeout,
        max_pool_connections=_POOL,
        tcp_keepalive=True,
        parameter_validation=validate,
    )


@dataclass
class Clients:
    dynamodb: DynamoDBClient
    kinesis: KinesisClient
    s3: S3Client
    redis: aioredis.Redis | None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    # S3 in the peer region, for the replica results bucket (None without one). A read of
    # the replica must not depend on the home region: a home-region client would send it
    # to the home endpoint and rely on a redirect from there, the region that may be down.
    replica_s3: S3Client | None = None
    # The lean PutRecords path over the same endpoint and credentials as `kinesis`
    # (grpc_edge/kinesis_writer.py); None when no credentials could be found.
    kinesis_writer: KinesisWriter | None = None
    _writer_for: object = None  # the `kinesis` client the writer stands in for
    # The lean DynamoDB path (idempotency claims: grpc_edge/idempotency.py) over the same
    # endpoint and credentials as `dynamodb`; None without credentials.
    dynamodb_json: AwsJsonClient | None = None
    _json_for: object = None  # the `dynamodb` client it stands in for

    def task_log(self) -> KinesisWriter | KinesisClient:
        """What the producer sends PutRecords through: the lean writer, unless `kinesis`
        was replaced after opening (tests wrap it to inject faults; then theirs is used)."""
        if self.kinesis_writer is not None and self._writer_for is self.kinesis:
            return self.kinesis_writer
        return self.kinesis

    def claims_json(self) -> AwsJsonClient | None:
        """The lean DynamoDB client for claims, unless `dynamodb` was replaced after
        opening (a test's wrapper: then every claim goes through that)."""
        return self.dynamodb_json if self._json_for is self.dynamodb else None

    @classmethod
    async def open(cls, settings: Settings) -> Clients:
        stack = contextlib.AsyncExitStack()
        session = aioboto3.Session()
        # A literal service name per call: the stubs type each client by it.
        home, endpoint = settings.region, settings.aws_endpoint_url
        dynamodb = await stack.enter_async_context(
            session.client(
                "dynamodb", config=_config(3, 5), region_name=home, endpoint_url=endpoint
            )
        )
        # The producer retries records itself, within each caller's deadline. It builds every
        # PutRecords itself, so botocore's per-record parameter validation (a walk over up
        # to 500 records per call, on the hot path) checks nothing the code does not fix.
        kinesis = await stack.enter_async_context(
            session.client(
                "kinesis",
                config=_config(1, 10, validate=False),
                region_name=home,
                endpoint_url=endpoint,
            )
        )
        # SigV4 for presigned result URLs too (botocore would presign with SigV2 in
        # us-east-1): X-Amz-Expires, and the region-scoped signature S3 requires.
        s3_config = _config(3, 30).merge(AioConfig(signature_version="s3v4"))
        s3 = await stack.enter_async_context(
            session.client("s3", config=s3_config, region_name=home, endpoint_url=endpoint)
        )
        replica_s3 = None
        if settings.replica_results_bucket and settings.peer_region:
            replica_s3 = await stack.enter_async_context(
                session.client(
                    "s3",
                    config=_config(3, 30),
                    region_name=settings.peer_region,
                    endpoint_url=endpoint,
                )
            )
        redis_client: aioredis.Redis | None = None
        if settings.redis_url:
            redis_client = aioredis.Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                max_connections=_REDIS_POOL,
            )
        # The same provider chain botocore uses (env, the ECS task role ...), refreshed by it.
        credentials = await aiobotocore.session.get_session().get_credentials()
        writer = dynamodb_json = None
        if credentials is not None:
            writer = KinesisWriter(kinesis.meta.endpoint_url, home, credentials, first_via=kinesis)
            stack.push_async_callback(writer.close)
            # One claim per keyed Submit, as many at once as calls in flight: keep as many
            # connections alive as the aiobotocore pool holds.
            dynamodb_json = AwsJsonClient(
                dynamodb.meta.endpoint_url, home, "dynamodb", credentials, idle_connections=_POOL
            )
            stack.push_async_callback(dynamodb_json.close)
        return cls(
            dynamodb,
            kinesis,
            s3,
            redis_client,
            stack,
            replica_s3,
            writer,
            kinesis,
            dynamodb_json,
            dynamodb,
        )

    async def close(self) -> None:
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        await self._stack.aclose()
