"""A stored result is checked as it streams (grpc_edge/result_storage.py): bytes that do not
match the recorded SHA-256, or an object that is not the zlib stream the workers write, end
the download with INTERNAL instead of wrong bytes; an object gone from storage is NOT_FOUND.
Over a real socket, against the moto server's S3."""

from __future__ import annotations

import zlib

import grpc
import pytest

from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.settings import Settings
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import TENANT, Edge, put_record
from tests.integration.edge.test_rpcs import succeeded

CONTENT = b"id,value\n" + b"1,alpha\n" * 1000


def stored(aws: RegionResources, settings: Settings, body: bytes | None) -> str:
    """A SUCCEEDED report of CONTENT whose S3 object holds `body` (None: no object)."""
    report_id = settings.id_codec().new(TENANT, settings.region).value
    key = resources.result_object_key(report_id)
    if body is not None:
        s3 = client("s3", aws.region, aws.endpoint_url)
        s3.put_object(Bucket=aws.results_bucket, Key=key, Body=body)
    put_record(aws, succeeded(settings, CONTENT, report_id=report_id, s3_key=key))
    return report_id


async def download(edge: Edge, report_id: str) -> bytes:
    chunks = [
        c
        async for c in edge.stub.DownloadReport(
            pb.DownloadReportRequest(report_id=report_id), metadata=edge.auth(), timeout=10
        )
    ]
    return b"".join(c.data for c in chunks)


async def test_an_intact_object_streams_its_bytes(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    report_id = stored(aws, settings, zlib.compress(CONTENT))
    assert await download(edge, report_id) == CONTENT


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (zlib.compress(CONTENT.replace(b"alpha", b"omega", 1)), "other bytes than recorded"),
        (CONTENT, "not zlib-compressed"),
    ],
)
async def test_a_damaged_object_ends_the_download_with_internal(
    edge: Edge, aws: RegionResources, settings: Settings, body: bytes, why: str
) -> None:
    report_id = stored(aws, settings, body)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await download(edge, report_id)
    assert caught.value.code() == grpc.StatusCode.INTERNAL, why


async def test_an_object_gone_from_storage_is_not_found(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    report_id = stored(aws, settings, None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await download(edge, report_id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
