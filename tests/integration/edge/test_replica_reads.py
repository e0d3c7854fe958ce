"""Issue 12.8: the edge reads the peer's replica results bucket through an S3 client for the
peer region, so a download still works when the home region's S3 does not answer."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
from aiobotocore.config import AioConfig

from grpc_edge.clients import Clients
from reportgrid import resources, results
from reportgrid.engine.request import GenerateResult
from reportgrid.local.bootstrap import RegionResources, client, create_region
from reportgrid.local.servers import free_port
from reportgrid.settings import Settings, load_settings
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import TENANT, put_record, running_edge
from tests.integration.edge.test_rpcs import succeeded

PEER = "eu-west-1"


@pytest.fixture
def peer(aws: RegionResources) -> RegionResources:
    return create_region(PEER, aws.endpoint_url, shards=1)


@pytest.fixture
def peered(region_env: dict[str, str], peer: RegionResources) -> Settings:
    env = resources.ENV
    return load_settings(
        {**region_env, env.PEER_REGION: PEER, env.REPLICA_RESULTS_BUCKET: peer.results_bucket}
    )


class SignedRegions:
    """The region each S3 request was signed for (SigV4's credential scope), by bucket."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: Any, **_: Any) -> None:
        auth = request.headers.get("Authorization", b"")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        self.seen.append((request.url, scope[2]))  # key/date/REGION/service/aws4_request


@contextlib.asynccontextmanager
async def dead_s3(region: str) -> AsyncIterator[Any]:
    """An S3 client for the home region whose endpoint does not answer (nothing listens)."""
    async with aioboto3.Session().client(
        "s3",
        region_name=region,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=AioConfig(retries={"max_attempts": 1}, connect_timeout=1),
    ) as s3:
        yield s3


async def test_the_replica_client_is_the_peer_regions(peered: Settings) -> None:
    clients = await Clients.open(peered)
    try:
        assert clients.s3.meta.region_name == peered.region
        assert clients.replica_s3.meta.region_name == PEER
    finally:
        await clients.close()


async def test_a_download_comes_from_the_replica_when_home_s3_is_down(
    peered: Settings, api_key: str, aws: RegionResources, peer: RegionResources
) -> None:
    # Given a SUCCEEDED report whose result object exists only in the peer's bucket
    content = hashlib.shake_256(b"replica").digest(2 * 1024 * 1024)
    report_id = peered.id_codec().new(TENANT, peered.region).value
    info = results.store_result(
        GenerateResult(data=content, row_count=1, content_type="text/csv"),
        report_id=report_id,
        generator_version=1,
        s3=client("s3", PEER, aws.endpoint_url),
        bucket=peer.results_bucket,
        region=PEER,
    )
    assert info.s3_key
    put_record(
        aws, succeeded(peered, content, report_id=report_id, s3_key=info.s3_key, s3_region=PEER)
    )
    clients = await Clients.open(peered)
    signed = SignedRegions()
    clients.replica_s3.meta.events.register("before-send.s3.GetObject", signed)
    try:
        # And the home region's S3 endpoint does not answer
        async with dead_s3(peered.region) as broken:
            clients.s3 = broken
            async with running_edge(peered, api_key, clients=clients) as edge:
                # When the client downloads it
                chunks = [
                    c.data
                    async for c in edge.stub.DownloadReport(
                        pb.DownloadReportRequest(report_id=report_id),
                        metadata=edge.auth(),
                        timeout=10,
                    )
                ]
        # Then it comes whole from the replica, signed for the peer region
        assert b"".join(chunks) == content
        assert signed.seen, "no GetObject went through the replica client"
        assert all(region == PEER for _, region in signed.seen)
        assert all(peer.results_bucket in url for url, _ in signed.seen)
    finally:
        await clients.close()
