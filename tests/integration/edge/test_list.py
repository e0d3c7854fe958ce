"""ListReports: the tenant index's shards merged newest first, with signed page tokens."""

from __future__ import annotations

import time

import grpc
import pytest

from reportgrid.local.bootstrap import RegionResources
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import OTHER_TENANT, TENANT, Edge, put_record


def seed(aws: RegionResources, settings: Settings, count: int, tenant: str = TENANT) -> list[str]:
    """`count` reports one ms apart, alternately SUCCEEDED and RUNNING; newest first."""
    base = time.time_ns() // 1_000_000 - 10_000
    ids = []
    for i in range(count):
        report_id = settings.id_codec().new(tenant, settings.region, now_ms=base + i).value
        state = State.SUCCEEDED if i % 2 == 0 else State.RUNNING
        put_record(aws, ReportRecord(report_id, tenant, "synthetic", state, base + i))
        ids.append(report_id)
    return ids[::-1]


async def test_pages_cover_every_report_once_newest_first(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    expected = seed(aws, settings, 11)
    seed(aws, settings, 3, tenant=OTHER_TENANT)  # invisible to the caller
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await edge.stub.ListReports(
            pb.ListReportsRequest(page_size=4, page_token=token), metadata=edge.auth(), timeout=5
        )
        pages += 1
        assert len(page.reports) <= 4
        seen += [r.report_id for r in page.reports]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected
    assert pages in (3, 4)


async def test_filters_and_tokens_bound_to_them(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    expected = seed(aws, settings, 6)
    request = pb.ListReportsRequest(page_size=2, states=[pb.REPORT_STATE_RUNNING])
    first = await edge.stub.ListReports(request, metadata=edge.auth(), timeout=5)
    assert [r.report_id for r in first.reports] == [expected[0], expected[2]]
    assert all(r.state == pb.REPORT_STATE_RUNNING for r in first.reports)
    # The token with other filters, altered, or forged is INVALID_ARGUMENT on page_token.
    tampered = first.next_page_token[:-2] + (
        "AA" if not first.next_page_token.endswith("AA") else "BB"
    )
    for bad in (
        pb.ListReportsRequest(page_size=2, page_token=first.next_page_token),
        pb.ListReportsRequest(page_size=2, states=[pb.REPORT_STATE_RUNNING], page_token=tampered),
        pb.ListReportsRequest(page_size=2, page_token="not-a-token"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.ListReports(bad, metadata=edge.auth(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (caught.value.details() or "")
    second = await edge.stub.ListReports(
        pb.ListReportsRequest(
            page_size=2, states=[pb.REPORT_STATE_RUNNING], page_token=first.next_page_token
        ),
        metadata=edge.auth(),
        timeout=5,
    )
    assert [r.report_id for r in second.reports] == [expected[4]]
    assert not second.next_page_token
