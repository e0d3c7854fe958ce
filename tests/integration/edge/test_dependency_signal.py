"""Issue 12.2: the edge's readiness follows its own PutRecords outcomes. A busy edge makes no
DescribeStreamSummary call; an idle one probes at most at its bounded rate; when its
Kinesis endpoint hangs it goes NOT_SERVING within the documented time and comes back once
the endpoint answers. Real moto servers, gRPC over loopback; the monitor's dials shortened
(HealthTiming) so the test takes seconds, not minutes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import grpc
import pytest
from aiobotocore.config import AioConfig

from grpc_edge.clients import Clients
from grpc_edge.dependency_health import HealthTiming
from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources, create_region
from reportgrid.local.servers import MotoServer
from reportgrid.settings import Settings
from tests.integration.edge.conftest import Edge, running_edge, synthetic_request

TIMING = HealthTiming(
    interval=0.2,
    fail_after=3,
    recover_after=2,
    probe_min_interval=1.0,
    probe_jitter=0.5,
    idle_after=1.0,
)
# Down: fail_after looks, plus one interval for a hung call to count as bad (documented in
# grpc_edge/dependency_health.py); the slack covers scheduling on a loaded machine.
DOWN_WITHIN = (TIMING.fail_after + 1) * TIMING.interval + 1.5
UP_WITHIN = TIMING.recover_after * TIMING.interval + 2.0


class Counter:
    """Counts requests of one operation sent by a real client (botocore's before-send)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, **_: Any) -> None:
        self.count += 1


async def ready(edge: Edge) -> bool:
    """The ALB's verdict: the readiness path answers OK, or UNAVAILABLE."""
    code = grpc.StatusCode.OK
    try:
        await edge.channel.unary_unary(resources.EDGE_READINESS_PATH)(b"", timeout=1)
    except grpc.aio.AioRpcError as err:
        code = err.code()
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, code
    return code == grpc.StatusCode.OK


async def wait_ready(edge: Edge, want: bool, within: float) -> float:
    started = time.monotonic()
    while await ready(edge) != want:
        assert time.monotonic() - started < within, f"readiness not {want} in {within:.1f} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def keep_submitting(edge: Edge, stop: asyncio.Event) -> int:
    """One Submit every ~20 ms until `stop`: a busy edge (bounded load, loopback only)."""
    done = 0
    while not stop.is_set():
        with contextlib.suppress(grpc.aio.AioRpcError):  # refused while Kinesis hangs
            await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=1)
            done += 1
        await asyncio.sleep(0.02)
    return done


@contextlib.asynccontextmanager
async def edge_with(settings: Settings, api_key: str, kinesis_url: str) -> AsyncIterator[Edge]:
    """The edge, its Kinesis client pointed at `kinesis_url`, configured as deployed."""
    clients = await Clients.open(settings)
    async with aioboto3.Session().client(
        "kinesis",
        region_name=settings.region,
        endpoint_url=kinesis_url,
        config=AioConfig(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=10),
    ) as kinesis:
        clients.kinesis = kinesis
        try:
            async with running_edge(
                settings, api_key, clients=clients, health_timing=TIMING
            ) as edge:
                yield edge
        finally:
            await clients.close()


@pytest.fixture
def kinesis_server(tmp_path: Path, aws: RegionResources) -> Iterator[MotoServer]:
    """A moto server of the edge's own, holding the task stream, that the test can freeze."""
    with MotoServer(None, tmp_path / "kinesis-moto.log") as server:
        create_region(aws.region, server.endpoint_url, shards=1)
        yield server


async def test_busy_edge_never_describes_the_stream_and_idle_one_probes_at_its_rate(
    settings: Settings, api_key: str, aws: RegionResources
) -> None:
    async with edge_with(settings, api_key, aws.endpoint_url) as edge:
        describes = Counter()
        events = edge.server.clients.kinesis.meta.events
        events.register("before-send.kinesis.DescribeStreamSummary", describes)
        outcomes_before = edge.server.producer.stats.batches
        # (a) Busy for 3 s (>> idle_after, several probe intervals): no DescribeStreamSummary
        stop = asyncio.Event()
        submitting = asyncio.ensure_future(keep_submitting(edge, stop))
        await asyncio.sleep(3.0)
        stop.set()
        submitted = await submitting
        assert submitted > 50
        assert edge.server.producer.stats.batches - outcomes_before > 50
        assert describes.count == 0
        assert await ready(edge)
        # (c) Idle for 4 s: it probes, but never more often than once per min interval
        idle_started = time.monotonic()
        await asyncio.sleep(4.0)
        idle = time.monotonic() - idle_started
        assert 1 <= describes.count <= 1 + idle / TIMING.probe_min_interval, describes.count
        assert await ready(edge)  # a good probe keeps it SERVING
        print(f"FIGURE busy {submitted} submits: 0 describes; idle {idle:.1f} s: {describes.count}")
        events.unregister("before-send.kinesis.DescribeStreamSummary", describes)


async def test_hung_kinesis_takes_readiness_down_and_recovery_brings_it_back(
    settings: Settings, api_key: str, kinesis_server: MotoServer
) -> None:
    async with edge_with(settings, api_key, kinesis_server.endpoint_url) as edge:
        stop = asyncio.Event()
        submitting = asyncio.ensure_future(keep_submitting(edge, stop))
        try:
            await asyncio.sleep(0.5)
            assert await ready(edge)
            # When the Kinesis endpoint stops answering (connections stay open)
            kinesis_server.pause()
            try:
                went_down = await wait_ready(edge, False, DOWN_WITHIN)
            finally:
                # Then, once it answers again, the hung calls and new ones succeed
                kinesis_server.resume()
            came_back = await wait_ready(edge, True, UP_WITHIN)
        finally:
            stop.set()
            await submitting
    stats = edge.server.dependency_health.stats
    assert (stats.went_down, stats.came_back) == (1, 1)
    assert stats.kinesis_probes <= 1  # the verdicts came from PutRecords, not from probes
    print(f"FIGURE not serving after {went_down:.2f} s, serving again {came_back:.2f} s after")
