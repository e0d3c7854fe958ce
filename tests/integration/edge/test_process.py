"""`python -m grpc_edge --workers 2` as a user runs it: ready line, SIGTERM drain."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources
from reportgrid.local.servers import MotoServer, free_port
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc
from tests.integration.edge.conftest import stream_tasks, synthetic_request

ROOT = Path(__file__).resolve().parents[3]


def wait_for_line(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if match := re.search(pattern, text):
            return match.group(0)
        if process.poll() is not None:
            raise AssertionError(f"edge exited with {process.returncode}:\n{text}")
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in {timeout}s:\n{log.read_text(errors='replace')}")


@pytest.mark.slow
async def test_sigterm_during_a_burst_fails_no_call_in_flight(
    region_env: dict[str, str],
    api_key: str,
    aws: RegionResources,
    moto_server: MotoServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "edge.log"
    env = {**os.environ, **region_env, resources.ENV.DRAIN_GRACE_SECONDS: "15"}
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 -- started once, not awaited
            [
                sys.executable,
                "-m",
                "grpc_edge",
                "--workers",
                "2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--drain-delay",
                "0.5",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_line(log, rf"listening on 127\.0\.0\.1:{port} \(2 workers\)", process, 60)
        target = f"127.0.0.1:{port}"
        auth = (("authorization", f"Bearer {api_key}"),)
        async with (
            grpc.aio.insecure_channel(target) as channel,
            grpc.aio.insecure_channel(target) as health_channel,
        ):
            stub = reports_pb2_grpc.ReportServiceStub(channel)
            warm = await stub.SubmitReport(synthetic_request(), metadata=auth, timeout=10)
            health = health_pb2_grpc.HealthStub(health_channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=30
            )
            assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING
            # Freeze the task log so that every Submit of the burst is in flight.
            moto_server.pause()
            try:
                burst = [
                    asyncio.ensure_future(
                        stub.SubmitReport(synthetic_request(), metadata=auth, timeout=30)
                    )
                    for _ in range(40)
                ]
                await asyncio.sleep(1.0)
                assert not any(call.done() for call in burst)
                process.send_signal(signal.SIGTERM)
                # Health says NOT_SERVING first, while the calls are still in flight.
                status = await asyncio.wait_for(health.read(), 5)
                assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
                assert not any(call.done() for call in burst)
            finally:
                moto_server.resume()
            replies = await asyncio.gather(*burst, return_exceptions=True)
            health.cancel()
        failures = [r for r in replies if not isinstance(r, pb.SubmitReportResponse)]
        assert failures == []
        assert process.wait(timeout=30) == 0
        acknowledged = {r.report_id for r in replies if isinstance(r, pb.SubmitReportResponse)}
        assert acknowledged | {warm.report_id} <= {t.report_id for t in stream_tasks(aws)}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
