"""Scenario 19.8: an HTTP/2 rapid-reset attacker without an API key (HEADERS+RST_STREAM on
one connection, as fast as loopback takes them) must not make other clients' calls fail.
The edge is a real subprocess; the attacker is tests/faults/h2_attack.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest

from reportgrid import resources
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc
from tests.faults.conftest import SERVICE, EdgeProcess, bearer, percentile
from tests.faults.h2_attack import rapid_reset

ATTACK_SECONDS = 4.0
VICTIMS = 32  # calls in flight at once, each on its own connection
# What the edge had before (grpc core's default: no SETTINGS_MAX_CONCURRENT_STREAMS).
UNLIMITED_STREAMS = str(2**31 - 1)


async def _under_attack(edge: EdgeProcess, api_key: str) -> dict[str, float]:
    channels = [grpc.aio.insecure_channel(edge.target) for _ in range(VICTIMS)]
    stubs = [reports_pb2_grpc.ReportServiceStub(c) for c in channels]
    auth = bearer(api_key)
    for stub in stubs:  # connected and authenticated before the attack starts
        await stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=auth, timeout=10)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    host, port = edge.target.split(":")
    attack = asyncio.ensure_future(
        asyncio.to_thread(
            rapid_reset, host, int(port), seconds=ATTACK_SECONDS, path=SERVICE + "GetReport"
        )
    )

    async def victim(stub: reports_pb2_grpc.ReportServiceStub) -> None:
        while not attack.done():
            started = time.monotonic()
            try:
                await stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=auth, timeout=5)
            except grpc.aio.AioRpcError as err:
                failures[err.code().name] = failures.get(err.code().name, 0) + 1
            latencies.append((time.monotonic() - started) * 1000)

    try:
        await asyncio.sleep(0.2)  # the attack is under way
        await asyncio.gather(*(victim(stub) for stub in stubs))
        result = await attack
    finally:
        for channel in channels:
            await channel.close()
    return {
        "attack_streams": result.streams,
        "attack_connections": result.connections,
        "calls": len(latencies),
        "failed": sum(failures.values()),
        "failed_by_code": str(failures or "-"),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


@pytest.mark.slow
async def test_rapid_reset_without_a_key_fails_no_other_call(
    edge_process: Callable[..., EdgeProcess], api_key: str, figure: Callable[..., None]
) -> None:
    # Given the edge as deployed (per-connection stream cap and grpc core's defences)
    protected = await _under_attack(edge_process(), api_key)
    # And, for the figure, the edge without a per-connection stream cap (as it was)
    unprotected = await _under_attack(
        edge_process(**{resources.ENV.MAX_STREAMS_PER_CONNECTION: UNLIMITED_STREAMS}), api_key
    )
    figure("19.8 rapid reset, streams capped", **protected)
    figure("19.8 rapid reset, streams uncapped", **unprotected)
    # Then the attacker sent a real load and no other client's call failed
    assert protected["attack_streams"] > 10_000
    assert protected["failed"] == 0, protected
    assert protected["calls"] > VICTIMS
