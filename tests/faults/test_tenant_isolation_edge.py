"""Scenario 19.4: one tenant's streams cannot lock other tenants out of an edge process.
Tenant A opens far more WatchReport streams than its share (caps lowered through
settings); tenant B's calls and watches keep working. Real edge on loopback, moto server,
redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources
from reportgrid.settings import load_settings
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc
from tests.faults.conftest import bearer, percentile, rpc_details
from tests.integration.edge.conftest import OTHER_TENANT, TENANT, running_edge

E = resources.ENV
A_SHARE = 40  # tenant A's watches per process
A_STREAMS = 240  # what A tries to hold open
CHANNELS = 4  # A's connections: each under the per-connection stream cap
B_CALLS = 200


async def test_a_tenant_over_its_stream_share_does_not_affect_another(
    region_env: dict[str, str],
    api_key: str,
    other_key: str,
    aws: RegionResources,
    figure: Callable[..., None],
) -> None:
    settings = load_settings(
        {
            **region_env,
            E.TENANT_MAX_CONCURRENT_WATCHES: str(A_SHARE),
            E.MAX_CONCURRENT_WATCHES: "1000",
            E.TENANT_MAX_CONCURRENT_RPCS: "50",
        }
    )
    codec = settings.id_codec()
    async with running_edge(settings, api_key) as edge:
        channels = [grpc.aio.insecure_channel(edge.target) for _ in range(CHANNELS)]
        stubs = [reports_pb2_grpc.ReportServiceStub(c) for c in channels]
        a_auth, b_auth = bearer(api_key), bearer(other_key)
        try:
            # Given tenant A opening many quiet watches (fresh ids: PENDING)
            watches = [
                stubs[n % CHANNELS].WatchReport(
                    pb.WatchReportRequest(report_id=codec.new(TENANT, settings.region).value),
                    metadata=a_auth,
                )
                for n in range(A_STREAMS)
            ]
            firsts = await asyncio.gather(*(w.read() for w in watches), return_exceptions=True)
            held = sum(isinstance(f, pb.WatchReportResponse) for f in firsts)
            refused = [f for f in firsts if isinstance(f, grpc.aio.AioRpcError)]
            # When tenant B calls and watches while A is at its share
            b_stub = reports_pb2_grpc.ReportServiceStub(edge.channel)
            latencies: list[float] = []
            failures = 0

            async def b_call(n: int) -> None:
                nonlocal failures
                started = time.monotonic()
                try:
                    if n % 10 == 0:
                        watch = b_stub.WatchReport(
                            pb.WatchReportRequest(
                                report_id=codec.new(OTHER_TENANT, settings.region).value
                            ),
                            metadata=b_auth,
                            timeout=5,
                        )
                        assert (await watch.read()).HasField("report")
                        watch.cancel()
                    else:
                        await b_stub.ListReportKinds(
                            pb.ListReportKindsRequest(), metadata=b_auth, timeout=5
                        )
                except grpc.aio.AioRpcError:
                    failures += 1
                latencies.append((time.monotonic() - started) * 1000)

            for batch in range(0, B_CALLS, 20):
                await asyncio.gather(*(b_call(n) for n in range(batch, batch + 20)))
            # And A's own unary calls still get through: its watches are not its calls
            a_call = await stubs[0].ListReportKinds(
                pb.ListReportKindsRequest(), metadata=a_auth, timeout=5
            )
            for watch in watches:
                watch.cancel()
        finally:
            for channel in channels:
                await channel.close()
    # Then A holds exactly its share and the rest is refused with a precise status
    assert held == A_SHARE
    assert len(refused) == A_STREAMS - A_SHARE
    first = refused[0]
    assert first.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rpc_details(first)
    assert details["QuotaFailure"].violations[0].subject == "tenant:concurrent-watches"
    assert details["RetryInfo"].retry_delay.ToMilliseconds() > 0
    assert a_call.kinds
    # And B saw no failure at all
    assert failures == 0
    figure(
        "19.4 tenant A at its stream share",
        a_held=held,
        a_refused=len(refused),
        b_calls=len(latencies),
        b_failed=failures,
        b_p50_ms=round(percentile(latencies, 50), 1),
        b_p99_ms=round(percentile(latencies, 99), 1),
    )
