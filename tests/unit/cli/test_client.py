"""The SDK against a scripted ReportService on a real socket: what it sends, how it waits,
pages, downloads, fails over, and which reportgrid.errors it raises."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reportgrid import errors
from reportgrid.client import AsyncReportClient, ChecksumMismatch, ReportClient
from reportgrid.local.servers import free_port
from reportgrid.v1 import reports_pb2 as pb
from tests.unit.cli.conftest import API_KEY, RESULT, Server


def test_submit_sends_an_idempotency_key_the_api_key_and_the_input(
    service: Server, tmp_path: Path
) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\neu,1\n")
    with ReportClient(service.endpoint, api_key=API_KEY) as client:
        client.submit("summary", {"top_n": 3}, input_file=data)
        client.submit("summary", {"top_n": 3}, input_file=data, idempotency_key="mine-1")
    (first, meta), (second, _) = service.script.submits
    assert meta["authorization"] == f"Bearer {API_KEY}"
    assert len(first.idempotency_key) == 32  # a fresh uuid4 per call
    assert second.idempotency_key == "mine-1"
    assert first.input.format == pb.DATA_FORMAT_CSV
    assert first.input.inline_data == data.read_bytes()
    assert dict(first.params) == {"top_n": 3}


def test_errors_are_reportgrid_errors_with_their_details(service: Server) -> None:
    with ReportClient(service.endpoint, api_key=API_KEY) as client:
        with pytest.raises(errors.NotFound) as missing:
            client.get("nope")
        with pytest.raises(errors.InvalidArgument) as invalid:
            client.submit("nope", input_data=b"a\n1\n", input_format="csv")
    assert missing.value.resource_name == "nope"
    assert invalid.value.violations[0].field == "kind"
    with (
        ReportClient(service.endpoint, api_key="rg_wrong") as client,
        pytest.raises(errors.Unauthenticated),
    ):
        client.kinds()


def test_wait_follows_the_watch_stream_to_the_terminal_state(service: Server) -> None:
    seen: list[int] = []
    with ReportClient(service.endpoint, api_key=API_KEY) as client:
        report_id = client.submit("summary", input_data=b"a\n1\n", input_format="csv").report_id
        final = client.wait(report_id, on_update=lambda r: seen.append(r.state))
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    assert seen == [pb.REPORT_STATE_PENDING, pb.REPORT_STATE_RUNNING, pb.REPORT_STATE_SUCCEEDED]
    assert service.script.gets == 0


def test_wait_falls_back_to_polling_when_watch_is_unavailable(service: Server) -> None:
    service.script.watch_unavailable = True
    with ReportClient(service.endpoint, api_key=API_KEY) as client:
        report_id = client.submit("summary", input_data=b"a\n1\n", input_format="csv").report_id
        final = client.wait(report_id, poll_interval=0.01)
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    assert service.script.gets >= 1


def test_list_walks_every_page(service: Server) -> None:
    with ReportClient(service.endpoint, api_key=API_KEY) as client:
        for _ in range(5):
            client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        pages = list(client.list_pages(page_size=2))
        ids = [r.report_id for r in client.list(page_size=2)]
    assert [len(p.reports) for p in pages] == [2, 2, 1]
    assert ids == ["r1", "r2", "r3", "r4", "r5"]


def test_download_verifies_the_checksum_and_writes_atomically(
    service: Server, tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    with ReportClient(service.endpoint, api_key=API_KEY) as client:
        report_id = client.submit("summary", input_data=b"a\n1\n", input_format="csv").report_id
        meta = client.download(report_id, target)
        stream = io.BytesIO()
        client.download(report_id, stream)
        service.script.corrupt_download = True
        bad = tmp_path / "bad.csv"
        with pytest.raises(ChecksumMismatch):
            client.download(report_id, bad)
    assert target.read_bytes() == RESULT
    assert stream.getvalue() == RESULT
    assert meta.row_count == 2
    assert not bad.exists()
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_fails_over_past_a_dead_endpoint_and_a_not_serving_one(
    service: Server, not_serving: Server
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    endpoints = [dead, not_serving.endpoint, service.endpoint]
    with ReportClient(endpoints, api_key=API_KEY, timeout=5) as client:
        kinds = client.kinds()
        assert client.endpoint == service.endpoint
    assert [k.name for k in kinds] == ["summary"]


def test_a_lone_dead_endpoint_is_unavailable() -> None:
    with (
        ReportClient(f"127.0.0.1:{free_port()}", timeout=2) as client,
        pytest.raises(errors.Unavailable),
    ):
        client.kinds()


async def test_the_async_client_does_the_same(service: Server, tmp_path: Path) -> None:
    async with AsyncReportClient(
        [f"127.0.0.1:{free_port()}", service.endpoint], api_key=API_KEY
    ) as client:
        accepted = await client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        final = await client.wait(accepted.report_id)
        await client.download(accepted.report_id, tmp_path / "r.csv")
        listed = [r.report_id async for r in client.list(page_size=1)]
        with pytest.raises(errors.NotFound):
            await client.get("nope")
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    assert (tmp_path / "r.csv").read_bytes() == RESULT
    assert listed == [accepted.report_id]
