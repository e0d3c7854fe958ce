"""The process's AWS and Redis clients: created once at start-up, shared by every request,
closed on shutdown. Tests may replace any of them (e.g. wrap the Kinesis client to inject
PutRecords partial failures) before the server is built.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import redis.asyncio as aioredis
from aiobotocore.config import AioConfig

from reportgrid.settings import Settings

# One connection pool per client; large enough for thousands of concurrent requests.
_POOL = 256
_REDIS_POOL = 1024
# Redis must answer fast or be bypassed: the breaker treats a slow answer as a failure.
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25


@dataclass
class Clients:
    dynamodb: Any
    kinesis: Any
    s3: Any
    redis: aioredis.Redis | None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    # S3 in the peer region, for the replica results bucket (None without one). A read of
    # the replica must not depend on the home region: a home-region client would send it
    # to the home endpoint and rely on a redirect from there, the region that may be down.
    replica_s3: Any = None

    @classmethod
    async def open(cls, settings: Settings) -> Clients:
        stack = contextlib.AsyncExitStack()
        session = aioboto3.Session()

        # The stubs type session.client per literal service name; these clients are Any here.
        new_client: Any = session.client

        async def open_client(
            service: str,
            attempts: int,
            read_timeout: float,
            *,
            region: str = settings.region,
            validate: bool = True,
        ) -> Any:
            config = AioConfig(
                retries={"max_attempts": attempts, "mode": "standard"},
                connect_timeout=2,
                read_timeout=read_timeout,
                max_pool_connections=_POOL,
                tcp_keepalive=True,
                parameter_validation=validate,
            )
            return await stack.enter_async_context(
                new_client(
                    service,
                    config=config,
                    region_name=region,
                    endpoint_url=settings.aws_endpoint_url,
                )
            )

        dynamodb = await open_client("dynamodb", 3, 5)
        # The producer retries records itself, within each caller's deadline. It builds every
        # PutRecords itself, so botocore's per-record parameter validation (a walk over up
        # to 500 records per call, on the hot path) checks nothing the code does not fix.
        kinesis = await open_client("kinesis", 1, 10, validate=False)
        s3 = await open_client("s3", 3, 30)
        replica_s3 = None
        if settings.replica_results_bucket and settings.peer_region:
            replica_s3 = await open_client("s3", 3, 30, region=settings.peer_region)
        redis_client: aioredis.Redis | None = None
        if settings.redis_url:
            redis_client = aioredis.Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                max_connections=_REDIS_POOL,
            )
        return cls(dynamodb, kinesis, s3, redis_client, stack, replica_s3)

    async def close(self) -> None:
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        await self._stack.aclose()
