"""Labels and views through a real edge against the moto server: the ListReports label
filter (a DynamoDB FilterExpression) across pages with tokens bound to it, page_size
coerced to 500, and GetReport's BASIC/FULL replies never mixed up by the terminal LRU."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import struct_pb2

from reportgrid import records
from reportgrid.local.bootstrap import RegionResources
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import TENANT, Edge, put_record


def _seed(aws: RegionResources, settings: Settings, labels: list[dict[str, str]]) -> list[str]:
    """One SUCCEEDED report per labels map, one ms apart; ids newest first."""
    base = time.time_ns() // 1_000_000 - 10_000
    ids = []
    for i, own in enumerate(labels):
        report_id = settings.id_codec().new(TENANT, settings.region, now_ms=base + i).value
        record = ReportRecord(report_id, TENANT, "synthetic", State.SUCCEEDED, base + i, labels=own)
        put_record(aws, record)
        ids.append(report_id)
    return ids[::-1]


async def test_the_label_filter_pages_with_tokens_bound_to_it(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    run = uuid.uuid4().hex[:12]  # this test's reports only
    labels = [{"run": run, "team": "billing" if i % 3 else "ops"} for i in range(9)]
    ids = _seed(aws, settings, labels)
    wanted = [rid for rid, own in zip(ids, labels[::-1], strict=True) if own["team"] == "billing"]
    request = pb.ListReportsRequest(page_size=2, labels={"run": run, "team": "billing"})
    seen: list[str] = []
    while True:
        page = await edge.stub.ListReports(request, metadata=edge.auth(), timeout=5)
        assert all(dict(r.labels) == {"run": run, "team": "billing"} for r in page.reports)
        seen += [r.report_id for r in page.reports]
        if not page.next_page_token:
            break
        token = page.next_page_token
        request.page_token = token
        # The token is bound to the label filter: another value is INVALID_ARGUMENT.
        other = pb.ListReportsRequest(page_size=2, labels={"run": run}, page_token=token)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.ListReports(other, metadata=edge.auth(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (caught.value.details() or "")
    assert seen == wanted
    assert len(seen) == 6


async def test_an_oversized_page_size_is_coerced_to_500(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    page = await edge.stub.ListReports(
        pb.ListReportsRequest(page_size=10_000), metadata=edge.auth(), timeout=10
    )
    assert len(page.reports) <= 500


async def test_get_serves_each_view_its_own_reply(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    params = struct_pb2.Struct()
    params.update({"output_rows": 3})
    request = pb.SubmitReportRequest(
        kind="synthetic",
        params=params,
        input=pb.ReportInput(format=pb.DATA_FORMAT_CSV, inline_data=b"a\n1\n"),
    )
    report_id = settings.id_codec().new(TENANT, settings.region).value
    now = time.time_ns() // 1_000_000
    put_record(
        aws,
        ReportRecord(
            report_id,
            TENANT,
            "synthetic",
            State.FAILED,
            now,
            ended_ms=now,
            expires_at=now // 1000 + 3600,
            error_reason="GENERATOR_FAILED",
            labels={"team": "ops"},
            spec=records.request_spec(request, kind_version=1, ttl_seconds=3600),
        ),
    )
    # BASIC, FULL, BASIC again: the second and third come from the LRU's replies.
    for view, has_spec in (
        (pb.REPORT_VIEW_UNSPECIFIED, False),
        (pb.REPORT_VIEW_FULL, True),
        (pb.REPORT_VIEW_BASIC, False),
        (pb.REPORT_VIEW_FULL, True),
    ):
        got = await edge.stub.GetReport(
            pb.GetReportRequest(report_id=report_id, view=view), metadata=edge.auth(), timeout=5
        )
        assert got.HasField("spec") is has_spec, view
        assert dict(got.labels) == {"team": "ops"}
        assert got.error.code == 13  # INTERNAL, from GENERATOR_FAILED
    assert got.spec.params == params
    assert got.spec.input.inline.size_bytes == 4
