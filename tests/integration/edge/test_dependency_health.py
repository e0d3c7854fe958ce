"""Edge health follows its dependencies with hysteresis, and the readiness path the ALB
checks answers with a status code (grpc.health.v1 says NOT_SERVING with OK)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from grpc_edge.dependency_health import DependencyHealth
from reportgrid import resources


class Probe:
    """The dependency, switchable between answering and failing."""

    def __init__(self) -> None:
        self.up = True

    async def __call__(self) -> None:
        if not self.up:
            raise ConnectionError("down")


async def _status(health: HealthServicer) -> int:
    return int(health._server_status[""])


async def test_one_blip_does_not_flip_but_a_run_of_failures_does() -> None:
    health, probe = HealthServicer(), Probe()
    monitor = DependencyHealth(health, probe, fail_after=3, recover_after=2)
    await monitor.set_serving(True)
    probe.up = False
    await monitor.probe_once()
    await monitor.probe_once()
    probe.up = True
    await monitor.probe_once()  # a blip of two: still SERVING
    assert await _status(health) == health_pb2.HealthCheckResponse.SERVING
    probe.up = False
    for _ in range(3):
        await monitor.probe_once()
    assert await _status(health) == health_pb2.HealthCheckResponse.NOT_SERVING
    probe.up = True
    await monitor.probe_once()
    assert await _status(health) == health_pb2.HealthCheckResponse.NOT_SERVING
    await monitor.probe_once()
    assert await _status(health) == health_pb2.HealthCheckResponse.SERVING
    assert (monitor.stats.went_down, monitor.stats.came_back) == (1, 1)


async def test_the_readiness_path_answers_unavailable_when_not_serving() -> None:
    health, probe = HealthServicer(), Probe()
    monitor = DependencyHealth(health, probe, fail_after=1, recover_after=1)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((monitor.readiness_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = channel.unary_unary(resources.EDGE_READINESS_PATH)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await check(b"", timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            await monitor.set_serving(True)
            assert await check(b"", timeout=2) is not None
            monitor.draining = True
            with pytest.raises(grpc.aio.AioRpcError):
                await check(b"", timeout=2)
    finally:
        await server.stop(0)
