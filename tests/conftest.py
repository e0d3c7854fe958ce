"""Shared fixtures: a real moto server and a real redis-server, each a child process on a
random loopback port, started once per test session and wiped before every test that
uses them. Nothing here can reach real AWS: credentials are fake and every client is
pointed at the moto server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reportgrid import resources
from reportgrid.local.bootstrap import LOCAL_CREDENTIALS, RegionResources, create_region
from reportgrid.local.deployed import synthesize
from reportgrid.local.launch import LocalDeployment, build_images, prepare
from reportgrid.local.servers import MotoServer, RedisServer
from reportgrid.settings import Settings, load_settings

# No test may use a developer's real AWS identity.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ["AWS_ACCESS_KEY_ID"] = LOCAL_CREDENTIALS["aws_access_key_id"]
os.environ["AWS_SECRET_ACCESS_KEY"] = LOCAL_CREDENTIALS["aws_secret_access_key"]
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", resources.METRICS_NAMESPACE)
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "reportgrid-tests")

TEST_REGION = "us-east-1"
TEST_ID_SECRET = "test-id-secret-0123456789abcdef"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoServer(None, log) as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoServer) -> RegionResources:
    """A fresh region: moto wiped, then every resource created from reportgrid.resources."""
    moto_server.reset()
    return create_region(TEST_REGION, moto_server.endpoint_url, shards=2)


@pytest.fixture(scope="session")
def redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    log: Path = tmp_path_factory.mktemp("redis") / "redis.log"
    with RedisServer(None, log) as server:
        yield server


@pytest.fixture
def redis_url(redis_process: RedisServer) -> str:
    """The URL of a real, empty redis-server."""
    import redis

    redis_process.resume()  # in case a fault test left it frozen
    client = redis.Redis.from_url(redis_process.url)
    client.flushall()
    client.close()
    return redis_process.url


@pytest.fixture
def region_env(aws: RegionResources, redis_url: str) -> dict[str, str]:
    """The environment of a process in the test region."""
    return {
        **aws.environ(),
        resources.ENV.REDIS_URL: redis_url,
        resources.ENV.ID_SECRETS: TEST_ID_SECRET,
    }


@dataclass(frozen=True)
class Synthesized:
    assembly: Path  # the cloud assembly (cdk.out), Lambda assets bundled
    images: dict[str, Path]  # each image target's /app/lib tree


@pytest.fixture(scope="session")
def synthesized() -> Synthesized:
    """The deployment as `cdk deploy` would ship it to the test region: synthesized and its
    image trees built once (both cached by content and file-locked, so cheap after the
    first run and safe under pytest-xdist)."""
    return Synthesized(synthesize((TEST_REGION,)), build_images())


@pytest.fixture
def deployment(synthesized: Synthesized, aws: RegionResources, redis_url: str) -> LocalDeployment:
    """The test region's stack tied to this test's moto server and Redis (its secrets are
    created in moto): start its containers and Lambda functions from here."""
    return prepare(
        synthesized.assembly,
        TEST_REGION,
        endpoint_url=aws.endpoint_url,
        images=synthesized.images,
        redis_url=redis_url,
        id_secrets=TEST_ID_SECRET,
    )


@pytest.fixture
def settings(region_env: dict[str, str]) -> Settings:
    return load_settings(region_env)
