"""Edge subprocess scenarios: 8 SIGTERM during a burst, 10 oversized messages (rejected
before the handler, RSS bounded)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources
from reportgrid.local.servers import MotoServer
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc
from tests.faults.conftest import SERVICE, EdgeProcess, bearer
from tests.integration.edge.conftest import stream_tasks, synthetic_request


@pytest.mark.slow
async def test_sigterm_during_a_burst_fails_no_call_in_flight(
    edge_process: Callable[..., EdgeProcess],
    api_key: str,
    aws: RegionResources,
    moto_server: MotoServer,
    figure: Callable[..., None],
) -> None:
    # Two workers: the parent forwards SIGTERM and both children drain.
    edge = edge_process(workers=2)
    auth = bearer(api_key)
    async with (
        grpc.aio.insecure_channel(edge.target) as channel,
        grpc.aio.insecure_channel(edge.target) as health_channel,
    ):
        stub = reports_pb2_grpc.ReportServiceStub(channel)
        await stub.SubmitReport(synthetic_request(), metadata=auth, timeout=10)  # warm
        health = health_pb2_grpc.HealthStub(health_channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING
        moto_server.pause()  # every Submit of the burst is now in flight
        try:
            burst = [
                asyncio.ensure_future(
                    stub.SubmitReport(synthetic_request(), metadata=auth, timeout=20)
                )
                for _ in range(100)
            ]
            await asyncio.sleep(0.5)
            edge.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            status = await asyncio.wait_for(health.read(), 5)
            not_serving_s = time.monotonic() - signalled
            in_flight_at_not_serving = sum(not call.done() for call in burst)
        finally:
            moto_server.resume()
        replies = await asyncio.gather(*burst, return_exceptions=True)
        health.cancel()
    exit_code = await asyncio.to_thread(edge.proc.wait, 20)
    drained_s = time.monotonic() - signalled
    failed = [r for r in replies if not isinstance(r, pb.SubmitReportResponse)]
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert in_flight_at_not_serving == len(burst)  # NOT_SERVING came before any answer
    assert failed == []
    assert exit_code == 0
    acked = {r.report_id for r in replies if isinstance(r, pb.SubmitReportResponse)}
    assert acked <= {t.report_id for t in stream_tasks(aws)}
    figure(
        "8 SIGTERM during a burst",
        in_flight=len(burst),
        failed=len(failed),
        not_serving_after_s=round(not_serving_s, 3),
        exit_code=exit_code,
        drained_s=round(drained_s, 2),
    )


def test_oversized_messages_are_resource_exhausted_before_the_handler_memory_bounded(
    edge_process: Callable[..., EdgeProcess], api_key: str, figure: Callable[..., None]
) -> None:
    edge = edge_process()
    auth = bearer(api_key)
    limit = resources.MAX_RECEIVE_MESSAGE_BYTES
    with grpc.insecure_channel(
        edge.target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        submit = channel.unary_unary(SERVICE + "SubmitReport")
        stub = reports_pb2_grpc.ReportServiceStub(channel)
        stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=auth, timeout=10)  # warm
        rss_before = edge.rss_bytes()
        sizes = [limit + 1, 1024 * 1024, 8 * 1024 * 1024, 32 * 1024 * 1024]
        sent = 0
        peak = rss_before
        after_round: list[int] = []
        started = time.monotonic()
        for round_ in range(6):
            for size in sizes:
                request = synthetic_request()
                request.input.inline_data = b"x" * size
                with pytest.raises(grpc.RpcError) as caught:
                    # No key at all: if a handler ran, the answer would be UNAUTHENTICATED
                    submit(request.SerializeToString(), timeout=10)
                assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value
                sent += size
            after_round.append(edge.rss_bytes())
            peak = max(peak, after_round[-1])
            del round_
        took = time.monotonic() - started
        # Still healthy and serving normal calls
        assert stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=auth, timeout=10)
    rss_after = edge.rss_bytes()
    growth_mb = (peak - rss_before) / 2**20
    assert edge.serving()
    # ~250 MiB went in. gRPC reads a message's frames before refusing it, so the process
    # grows by about one largest message, once; later rounds add nothing (no leak, no queue).
    # Usually 10-14 MiB; once 52 (most likely the allocator kept a freed 32 MiB buffer in
    # one thread's arena while another took a new one), so the bound is two largest
    # messages: a queue or a leak would show as several, the ~250 MiB sent.
    largest_mb = max(sizes) / 2**20
    assert growth_mb < 2 * largest_mb, growth_mb
    # Five more rounds (~200 MiB) add less than one largest message: nothing is retained
    # per message (allocator noise only).
    later_growth_mb = (max(after_round[1:]) - after_round[0]) / 2**20
    # A leak would show as the ~200 MiB sent; allocator noise under two messages.
    assert later_growth_mb < 2 * largest_mb, later_growth_mb  # 34 MiB seen once, loaded
    figure(
        "10 oversized messages",
        messages=6 * len(sizes),
        sent_mb=round(sent / 2**20),
        code="RESOURCE_EXHAUSTED",
        rss_growth_mb=round(growth_mb, 1),
        rss_growth_after_round1_mb=round(later_growth_mb, 1),
        rss_after_mb=round(rss_after / 2**20, 1),
        seconds=round(took, 2),
    )
