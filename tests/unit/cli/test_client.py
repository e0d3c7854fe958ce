"""The SDK against a scripted ReportService on a real socket: what it sends, how it waits,
pages, downloads, fails over, and which reportgrid.errors it raises. Every test runs with
both clients (`connect` is ReportClient, then AsyncReportClient)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reportgrid import errors
from reportgrid.client import AsyncReportClient, ChecksumMismatch, ReportClient
from reportgrid.local.servers import free_port
from reportgrid.v1 import reports_pb2 as pb
from tests.unit.cli.conftest import API_KEY, RESULT, Server
from tests.unit.cli.flavours import Blocking, Connect


async def test_each_flavour_drives_its_own_client(
    connect: Connect, request: pytest.FixtureRequest, service: Server
) -> None:
    flavour = request.node.callspec.params["connect"]
    async with connect(service.endpoint, api_key=API_KEY) as client:
        driven = client.client if isinstance(client, Blocking) else client
        assert await client.kinds()
    assert type(driven) is {"sync": ReportClient, "async": AsyncReportClient}[flavour]


async def test_submit_sends_an_idempotency_key_the_api_key_and_the_input(
    connect: Connect, service: Server, tmp_path: Path
) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\neu,1\n")
    async with connect(service.endpoint, api_key=API_KEY) as client:
        await client.submit("summary", {"top_n": 3}, input_file=data)
        await client.submit("summary", {"top_n": 3}, input_file=data, idempotency_key="mine-1")
    (first, meta), (second, _) = service.script.submits
    assert meta["authorization"] == f"Bearer {API_KEY}"
    assert len(first.idempotency_key) == 32  # a fresh uuid4 per call
    assert second.idempotency_key == "mine-1"
    assert first.input.format == pb.DATA_FORMAT_CSV
    assert first.input.inline_data == data.read_bytes()
    assert dict(first.params) == {"top_n": 3}


async def test_errors_are_reportgrid_errors_with_their_details(
    connect: Connect, service: Server
) -> None:
    async with connect(service.endpoint, api_key=API_KEY) as client:
        with pytest.raises(errors.NotFound) as missing:
            await client.get("nope")
        with pytest.raises(errors.InvalidArgument) as invalid:
            await client.submit("nope", input_data=b"a\n1\n", input_format="csv")
    assert missing.value.resource_name == "nope"
    assert invalid.value.violations[0].field == "kind"
    async with connect(service.endpoint, api_key="rg_wrong") as client:
        with pytest.raises(errors.Unauthenticated):
            await client.kinds()


async def test_wait_follows_the_watch_stream_to_the_terminal_state(
    connect: Connect, service: Server
) -> None:
    seen: list[int] = []
    async with connect(service.endpoint, api_key=API_KEY) as client:
        accepted = await client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        final = await client.wait(accepted.report_id, on_update=lambda r: seen.append(r.state))
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    # The heartbeat between RUNNING and SUCCEEDED is not an update
    assert seen == [pb.REPORT_STATE_PENDING, pb.REPORT_STATE_RUNNING, pb.REPORT_STATE_SUCCEEDED]
    assert service.script.gets == 0


async def test_wait_falls_back_to_polling_when_watch_is_unavailable(
    connect: Connect, service: Server
) -> None:
    service.script.watch_unavailable = True
    async with connect(service.endpoint, api_key=API_KEY) as client:
        accepted = await client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        final = await client.wait(accepted.report_id, poll_interval=0.01)
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    assert service.script.gets >= 1


async def test_a_watch_that_ends_unavailable_is_no_reason_to_fail_over(
    connect: Connect, service: Server, other_service: Server
) -> None:
    # Given two serving endpoints, the first ending every watch UNAVAILABLE after a report
    # (as the edge ends one at its longest duration)
    service.script.watch_ends_unavailable = True
    seen: list[int] = []
    async with connect([service.endpoint, other_service.endpoint], api_key=API_KEY) as client:
        accepted = await client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        # When the client waits on a report only the first endpoint knows
        final = await client.wait(accepted.report_id, on_update=lambda r: seen.append(r.state))
        endpoint = client.endpoint
    # Then it read the report there once and stayed: the other endpoint saw no call
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    assert seen == [pb.REPORT_STATE_RUNNING, pb.REPORT_STATE_SUCCEEDED]
    assert (service.script.watches, service.script.gets) == (1, 1)
    assert endpoint == service.endpoint
    assert (other_service.script.watches, other_service.script.gets) == (0, 0)


async def test_list_walks_every_page(connect: Connect, service: Server) -> None:
    async with connect(service.endpoint, api_key=API_KEY) as client:
        for _ in range(5):
            await client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        pages = [page async for page in client.list_pages(page_size=2)]
        ids = [r.report_id async for r in client.list(page_size=2)]
    assert [len(p.reports) for p in pages] == [2, 2, 1]
    assert ids == ["r1", "r2", "r3", "r4", "r5"]


async def test_download_verifies_the_checksum_and_writes_atomically(
    connect: Connect, service: Server, tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    async with connect(service.endpoint, api_key=API_KEY) as client:
        accepted = await client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        meta = await client.download(accepted.report_id, target)
        stream = io.BytesIO()
        await client.download(accepted.report_id, stream)
        service.script.corrupt_download = True
        bad = tmp_path / "bad.csv"
        with pytest.raises(ChecksumMismatch):
            await client.download(accepted.report_id, bad)
    assert target.read_bytes() == RESULT
    assert stream.getvalue() == RESULT
    assert meta.row_count == 2
    assert not bad.exists()
    # No temporary file left behind (a blocking listing is fine in a test)
    assert list(tmp_path.iterdir()) == [target]  # noqa: ASYNC240


async def test_fails_over_past_a_dead_endpoint_and_a_not_serving_one(
    connect: Connect, service: Server, not_serving: Server
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    endpoints = [dead, not_serving.endpoint, service.endpoint]
    async with connect(endpoints, api_key=API_KEY, timeout=5) as client:
        kinds = await client.kinds()
        assert client.endpoint == service.endpoint
    assert [k.name for k in kinds] == ["summary"]


async def test_a_lone_dead_endpoint_is_unavailable(connect: Connect) -> None:
    async with connect(f"127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(errors.Unavailable):
            await client.kinds()


async def test_every_call_works_after_failing_over_past_a_dead_endpoint(
    connect: Connect, service: Server, tmp_path: Path
) -> None:
    async with connect([f"127.0.0.1:{free_port()}", service.endpoint], api_key=API_KEY) as client:
        accepted = await client.submit("summary", input_data=b"a\n1\n", input_format="csv")
        final = await client.wait(accepted.report_id)
        await client.download(accepted.report_id, tmp_path / "r.csv")
        listed = [r.report_id async for r in client.list(page_size=1)]
        cancelled = await client.cancel(accepted.report_id)
        deleted = await client.delete(accepted.report_id)
        with pytest.raises(errors.NotFound):
            await client.get(accepted.report_id)
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    assert (tmp_path / "r.csv").read_bytes() == RESULT
    assert listed == [accepted.report_id]
    assert cancelled.report_id == deleted.report_id == accepted.report_id
