"""The fault and bad-input suite (issue 8): shared helpers and the figures table.

Every scenario injects a real fault into real parts (the moto server, redis-server
processes, gRPC over loopback sockets, worker and edge subprocesses), asserts its promise,
and records its FIGURE with the `figure` fixture. Each figure is printed when recorded and
again in one table at the end of the session (`make test-faults` runs with -s).

Helpers for an edge are reused from tests/integration/edge (in-process `running_edge`) and
added here for an edge subprocess (`EdgeProcess`, RSS and health readable).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reportgrid import resources
from reportgrid.local.servers import RedisServer, free_port
from tests.integration.edge.conftest import api_key, other_key  # noqa: F401 -- fixtures
from tests.integration.workers.conftest import region  # noqa: F401 -- fixture

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "/reportgrid.v1.ReportService/"
METHODS = (
    "SubmitReport",
    "GetReport",
    "WatchReport",
    "ListReports",
    "CancelReport",
    "DeleteReport",
    "DownloadReport",
    "ListReportKinds",
)
STREAMING = frozenset({"WatchReport", "DownloadReport"})


# --- figures ------------------------------------------------------------------------------


@dataclass
class Figure:
    scenario: str
    test: str
    values: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.values.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


FIGURES: list[Figure] = []


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """figure("5 Redis frozen", errors=0, p99_ms=12.3): record and print this figure."""

    def record(scenario: str, **values: Any) -> None:
        entry = Figure(scenario, request.node.name, values)
        FIGURES.append(entry)
        print(f"\nFIGURE [{scenario}] {entry.line()}")

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault figures")
    width = max(len(f.scenario) for f in FIGURES)
    for entry in sorted(FIGURES, key=lambda f: _scenario_order(f.scenario)):
        terminalreporter.write_line(f"{entry.scenario:<{width}}  {entry.line()}")


def _scenario_order(scenario: str) -> tuple[int, str]:
    number = re.match(r"(\d+)", scenario)
    return (int(number.group(1)) if number else 99, scenario)


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- real processes -----------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may freeze, kill and restart (the session one is shared)."""
    with RedisServer(None, tmp_path / "redis.log") as server:
        yield server


def wait_for_log(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if match := re.search(pattern, text):
            return match.group(0)
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in {timeout}s:\n{log.read_text(errors='replace')}")


class EdgeProcess:
    """`python -m grpc_edge --workers N` as a user runs it, on a free loopback port."""

    def __init__(
        self, env: dict[str, str], log: Path, *, workers: int = 1, drain_delay: float = 0.2
    ) -> None:
        self.port = free_port()
        self.log = log
        self.workers = workers
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "grpc_edge",
                    "--workers",
                    str(workers),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--drain-delay",
                    str(drain_delay),
                ],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        # With several workers the parent says so once every child is ready.
        suffix = rf" \({self.workers} workers\)" if self.workers > 1 else ""
        pattern = rf"listening on 127\.0\.0\.1:{self.port}{suffix}"
        wait_for_log(self.log, pattern, self.proc, timeout)

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def serving(self) -> bool:
        with grpc.insecure_channel(self.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def edge_process(
    region_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., EdgeProcess]]:
    """Start edge subprocesses in the test region (extra env overrides); all are stopped
    at the end of the test."""
    started: list[EdgeProcess] = []

    def start(*, workers: int = 1, **extra_env: str) -> EdgeProcess:
        env = {**region_env, resources.ENV.DRAIN_GRACE_SECONDS: "5", **extra_env}
        edge = EdgeProcess(env, tmp_path / f"edge-{len(started)}.log", workers=workers)
        started.append(edge)
        edge.wait_ready()
        return edge

    yield start
    for edge in started:
        edge.kill()


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def rpc_details(err: grpc.RpcError) -> dict[str, Any]:
    """The google.rpc details of a failed call, by type name (RetryInfo, BadRequest...)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    found: dict[str, Any] = {}
    for detail in status.details if status is not None else ():
        name = detail.TypeName().rsplit(".", 1)[-1]
        message = getattr(error_details_pb2, name)()
        detail.Unpack(message)
        found[name] = message
    return found


def stored_record(aws: Any, report_id: str) -> Any:
    """The report item as DynamoDB holds it now (None if absent)."""
    from reportgrid import records
    from reportgrid.local.bootstrap import client

    item = client("dynamodb", aws.region, aws.endpoint_url).get_item(
        TableName=aws.table_name,
        Key={k: {"S": v} for k, v in resources.report_key(report_id).items()},
        ConsistentRead=True,
    )
    return records.from_item(item["Item"]) if "Item" in item else None
