"""The edge's fast paths keep their promises: a hot terminal report's cached reply is the
report, for its tenant only; calls over the concurrency limit are shed, counted in
ShedRequests, and health checks still answer."""

from __future__ import annotations

import io
import json
import time
import zlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reportgrid import records, resources
from reportgrid.local.bootstrap import RegionResources
from reportgrid.settings import Settings, load_settings
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import (
    Edge,
    put_record,
    running_edge,
    synthetic_request,
)
from tests.integration.edge.test_rpcs import succeeded


async def test_hot_terminal_reports_are_answered_from_cache_for_their_tenant_only(
    edge: Edge, other_key: str, aws: RegionResources, settings: Settings
) -> None:
    # Given a SUCCEEDED report with a small inline result, read once (now hot)
    content = b"a,b\n1,2\n"
    record = succeeded(settings, content, inline_compressed=zlib.compress(content))
    put_record(aws, record)
    expected = {
        flag: records.to_proto(record, now_ms=time.time_ns() // 1_000_000, include_content=flag)
        for flag in (False, True)
    }
    stats = edge.server.service.reader.stats
    for flag in (False, True, False, True):
        got = await edge.stub.GetReport(
            pb.GetReportRequest(report_id=record.report_id, include_content=flag),
            metadata=edge.auth(),
            timeout=5,
        )
        # Then each answer is the report, with content only when asked for
        assert got == expected[flag]
    assert stats.dynamodb_reads == 1
    assert stats.lru_hits >= 2
    # And another tenant asking for the cached id gets NOT_FOUND, as without the cache
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.GetReport(
            pb.GetReportRequest(report_id=record.report_id),
            metadata=edge.auth(other_key),
            timeout=5,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_calls_over_the_limit_are_shed_counted_and_health_still_answers(
    region_env: dict[str, str], api_key: str
) -> None:
    settings = load_settings({**region_env, resources.ENV.MAX_CONCURRENT_WATCHES: "2"})
    async with running_edge(settings, api_key) as edge:
        ids = [
            (await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth())).report_id
            for _ in range(2)
        ]
        # Given two watches of PENDING reports holding both slots
        holders = [
            edge.stub.WatchReport(pb.WatchReportRequest(report_id=i), metadata=edge.auth())
            for i in ids
        ]
        for holder in holders:
            await holder.read()
        # When a third watch comes
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.WatchReport(
                pb.WatchReportRequest(report_id=ids[0]), metadata=edge.auth(), timeout=5
            ).read()
        elapsed = time.monotonic() - started
        # Then it is shed at once (not queued), and the health check (never shed) still says SERVING
        health = health_pb2_grpc.HealthStub(edge.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        for holder in holders:
            holder.cancel()
        shed = edge.server.chain.shed
        out = io.StringIO()
        edge.server.metrics.flush(out)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert elapsed < 0.5
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert shed == 1
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    rollup = [d for d in docs if resources.METRIC.SHED_REQUESTS in d]
    assert [d[resources.METRIC.SHED_REQUESTS] for d in rollup] == [1]
    assert rollup[0][resources.METRIC_SERVICE_DIMENSION] == resources.SERVICE_EDGE
