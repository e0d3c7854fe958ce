"""Large results without the edge (issue 14, item 10), over a real socket against the moto
server: a result stored in S3 by the workers' own code (reportgrid.results) is offered as a
presigned URL that serves exactly its bytes, DownloadReport resumes from read_offset, and
the CLI takes the URL, falls back to the stream when the URL fails, and refuses bytes whose
SHA-256 does not match."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from typer.testing import CliRunner

from reportgrid import resources, results
from reportgrid.cli.commands import app
from reportgrid.cli.exit_codes import Exit
from reportgrid.client import _download
from reportgrid.engine.request import GenerateResult
from reportgrid.errors import SettingsError
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.settings import Settings, load_settings
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import TENANT, Edge, put_record, running_edge
from tests.integration.edge.test_rpcs import succeeded

# Random hex: about half compresses away, so the result is over the inline limit and in S3.
LARGE = b"id,value\n" + secrets.token_hex(400_000).encode() + b"\n"
SMALL = b"id,value\n1,alpha\n"


def store(aws: RegionResources, settings: Settings, content: bytes) -> str:
    """A SUCCEEDED report whose result the workers' store_result placed (S3 or inline)."""
    report_id = settings.id_codec().new(TENANT, settings.region).value
    info = results.store_result(
        GenerateResult(data=content, row_count=1, content_type="text/csv"),
        report_id=report_id,
        generator_version=1,
        s3=boto3.client(
            "s3",
            region_name=aws.region,
            endpoint_url=aws.endpoint_url,
        ),
        bucket=aws.results_bucket,
        region=aws.region,
    )
    extra: dict[str, Any] = (
        {"s3_key": info.s3_key, "s3_region": info.s3_region}
        if info.s3_key
        else {"inline_compressed": info.inline_compressed}
    )
    put_record(aws, succeeded(settings, content, report_id=report_id, **extra))
    return report_id


def corrupt(aws: RegionResources, report_id: str) -> None:
    """Other (valid zlib) bytes under the report's object, as a damaged store would hold."""
    s3 = client("s3", aws.region, aws.endpoint_url)
    s3.put_object(
        Bucket=aws.results_bucket,
        Key=resources.result_object_key(report_id),
        Body=zlib.compress(LARGE.replace(b"id", b"ix", 1)),
        ContentEncoding=results.CONTENT_ENCODING,
    )


async def get(edge: Edge, report_id: str, key: str | None = None, **kw: Any) -> pb.Report:
    request = pb.GetReportRequest(report_id=report_id, **kw)
    return await edge.stub.GetReport(request, metadata=edge.auth(key), timeout=10)


async def chunks(edge: Edge, report_id: str, **kw: Any) -> list[pb.DownloadReportChunk]:
    request = pb.DownloadReportRequest(report_id=report_id, **kw)
    return [c async for c in edge.stub.DownloadReport(request, metadata=edge.auth(), timeout=10)]


def fetch(uri: str) -> bytes:
    with urllib.request.urlopen(uri, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "deflate"
        return zlib.decompress(response.read())


async def test_get_offers_a_url_that_serves_exactly_the_result(
    edge: Edge, aws: RegionResources, settings: Settings, other_key: str
) -> None:
    report_id = store(aws, settings, LARGE)
    assert not (await get(edge, report_id)).result.download_uri  # only when asked for
    before = time.time()
    meta = (await get(edge, report_id, include_download_uri=True)).result
    assert meta.download_uri.startswith(aws.endpoint_url + "/")
    assert f"/results/{report_id}?" in meta.download_uri  # exactly this report's object
    expires = meta.download_uri_expire_time.ToMilliseconds() / 1000
    assert before < expires <= time.time() + settings.download_uri_seconds + 1
    body = fetch(meta.download_uri)
    assert hashlib.sha256(body).hexdigest() == meta.sha256
    assert body == LARGE
    # The same id under another tenant is not found: no URL, no metadata.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get(edge, report_id, other_key, include_download_uri=True)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # prefer_uri: one chunk, the metadata with the URL, no bytes.
    (only,) = await chunks(edge, report_id, prefer_uri=True)
    assert only.metadata.download_uri
    assert not only.data
    assert fetch(only.metadata.download_uri) == LARGE


async def test_an_inline_result_streams_and_has_no_url(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    report_id = store(aws, settings, SMALL)
    assert not (await get(edge, report_id, include_download_uri=True)).result.download_uri
    got = await chunks(edge, report_id, prefer_uri=True)
    assert b"".join(c.data for c in got) == SMALL
    assert not got[0].metadata.download_uri


@pytest.mark.parametrize("content", [LARGE, SMALL], ids=["s3", "inline"])
async def test_read_offset_resumes_with_absolute_offsets(
    edge: Edge, aws: RegionResources, settings: Settings, content: bytes
) -> None:
    report_id = store(aws, settings, content)
    for offset in (0, len(content) // 2 + 7, len(content)):
        got = await chunks(edge, report_id, read_offset=offset)
        assert got[0].HasField("metadata")
        assert got[0].metadata.size_bytes == len(content)
        assert b"".join(c.data for c in got) == content[offset:], offset
        position = offset
        for chunk in got:
            assert chunk.offset == position
            position += len(chunk.data)


@pytest.mark.parametrize("offset", [-1, len(LARGE) + 1])
async def test_read_offset_outside_the_result_is_out_of_range(
    edge: Edge, aws: RegionResources, settings: Settings, offset: int
) -> None:
    report_id = store(aws, settings, LARGE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chunks(edge, report_id, read_offset=offset)
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["read_offset"]


# -- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the SDK fetched (through the real fetch)."""
    seen: list[str] = []
    real = _download.fetch_uri

    def spy(uri: str, sink: _download.DownloadSink, timeout: float) -> None:
        seen.append(uri)
        real(uri, sink, timeout)

    monkeypatch.setattr(_download, "fetch_uri", spy)
    return seen


async def cli_download(edge: Edge, report_id: str, out: Path) -> Any:
    argv = ["download", report_id, "--out", str(out), "--endpoint", edge.target]
    argv += ["--api-key", edge.key, "--timeout", "20"]
    return await asyncio.to_thread(CliRunner().invoke, app, argv)


async def test_the_cli_downloads_by_the_url(
    edge: Edge, aws: RegionResources, settings: Settings, fetches: list[str], tmp_path: Path
) -> None:
    report_id = store(aws, settings, LARGE)
    result = await cli_download(edge, report_id, tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.csv").read_bytes() == LARGE
    assert len(fetches) == 1
    assert report_id in fetches[0]


async def test_the_cli_falls_back_to_the_stream_when_the_url_fails(
    edge: Edge,
    aws: RegionResources,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    report_id = store(aws, settings, LARGE)
    tried: list[str] = []
    real: Callable[..., None] = _download.fetch_uri

    def tampered(uri: str, sink: _download.DownloadSink, timeout: float) -> None:
        # Another object name under the same signature: S3 refuses it (403), moto has no
        # such object (404); either way the URL fails.
        tried.append(uri)
        real(uri.replace(f"/results/{report_id}?", f"/results/{report_id}x?"), sink, timeout)

    monkeypatch.setattr(_download, "fetch_uri", tampered)
    result = await cli_download(edge, report_id, tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert tried
    assert (tmp_path / "out.csv").read_bytes() == LARGE


async def test_an_expiring_url_is_not_tried(
    aws: RegionResources, settings: Settings, api_key: str, fetches: list[str], tmp_path: Path
) -> None:
    short = settings.model_copy(update={"download_uri_seconds": 1})
    async with running_edge(short, api_key) as edge:
        report_id = store(aws, settings, LARGE)
        result = await cli_download(edge, report_id, tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert fetches == []
    assert (tmp_path / "out.csv").read_bytes() == LARGE


async def test_the_cli_refuses_a_result_that_does_not_match_its_sha256(
    edge: Edge, aws: RegionResources, settings: Settings, fetches: list[str], tmp_path: Path
) -> None:
    report_id = store(aws, settings, LARGE)
    corrupt(aws, report_id)
    result = await cli_download(edge, report_id, tmp_path / "out.csv")
    assert result.exit_code == Exit.CHECKSUM, result.output
    assert report_id in result.output
    assert fetches
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 -- neither the file nor a partial one


@pytest.mark.parametrize("value", ["0", "3601", "soon"])
def test_a_bad_url_lifetime_stops_the_edge_at_start_up(
    region_env: dict[str, str], value: str
) -> None:
    env = {**region_env, resources.ENV.DOWNLOAD_URI_SECONDS: value}
    with pytest.raises(SettingsError, match=resources.ENV.DOWNLOAD_URI_SECONDS):
        load_settings(env)
