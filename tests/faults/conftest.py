"""The fault and bad-input suite (issue 8): shared helpers and the figures table.

Every scenario injects a real fault into real parts (the moto server, redis-server
processes, gRPC over loopback sockets, worker and edge subprocesses), asserts its promise,
and records its FIGURE with the `figure` fixture. Each figure is printed when recorded and
again in one table at the end of the session (`make test-faults` runs with -s).

Helpers for an edge are reused from tests/integration/edge (in-process `running_edge`, for
the tests that inject faults into the edge's own clients) and added here for the edge as
deployed (`EdgeProcess`: the task definition's argv and environment, RSS and health
readable). Deployed processes start from the synthesized template (tests/conftest.py
`deployment`), as the local region does.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
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
from reportgrid.local.bootstrap import client
from reportgrid.local.event_sources import kinesis_source, sqs_source
from reportgrid.local.kinesis_runner import KinesisRunner
from reportgrid.local.lambda_host import LambdaHost
from reportgrid.local.launch import LocalDeployment
from reportgrid.local.servers import RedisServer, free_port
from reportgrid.local.sqs_source import SqsEventSource
from reportgrid.v1 import reports_pb2
from tests.integration.edge.conftest import api_key, other_key  # noqa: F401 -- fixtures
from tests.integration.workers.conftest import region  # noqa: F401 -- fixture

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "/reportgrid.v1.ReportService/"
# Every RPC of the service, from the proto itself: a new RPC is fuzzed and fed corrupt bytes
# without anyone remembering to list it here.
_SERVICE_DESCRIPTOR = reports_pb2.DESCRIPTOR.services_by_name["ReportService"]
METHODS = tuple(m.name for m in _SERVICE_DESCRIPTOR.methods)
STREAMING = frozenset(m.name for m in _SERVICE_DESCRIPTOR.methods if m.server_streaming)
E = resources.ENV
# The edge's drain grace here (a local override; deployed: 20 s): SIGTERM tests wait it.
DRAIN_GRACE_SECONDS = "5"


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
    """The edge as ECS starts it: the task definition's argv and environment from the
    synthesized template (launch.LocalDeployment.container), on a free port."""

    def __init__(
        self,
        deployment: LocalDeployment,
        log: Path,
        *,
        workers: int = 1,
        tuning: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.log = log
        self.workers = workers
        process = deployment.container(
            "edge",
            {
                E.EDGE_PORT: str(self.port),
                E.EDGE_WORKERS: str(workers),
                E.DRAIN_GRACE_SECONDS: DRAIN_GRACE_SECONDS,
                **(tuning or {}),
            },
        )
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                process.argv,
                cwd=log.parent,  # the image's WORKDIR holds nothing importable either
                env=process.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        # With several workers the parent says so once every child is ready. The deployed
        # argv binds every address ([::]), as in the task; the tests dial loopback.
        suffix = rf" \({self.workers} workers\)" if self.workers > 1 else ""
        wait_for_log(self.log, rf"listening on \S+:{self.port}{suffix}", self.proc, timeout)

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
    deployment: LocalDeployment, tmp_path: Path
) -> Iterator[Callable[..., EdgeProcess]]:
    """Start edge processes of the test region's deployment (keyword arguments: settings
    the test tunes, each one of launch.TUNING_OVERRIDES); all are killed at the end."""
    started: list[EdgeProcess] = []

    def start(*, workers: int = 1, **tuning: str) -> EdgeProcess:
        log = tmp_path / f"edge-{len(started)}.log"
        edge = EdgeProcess(deployment, log, workers=workers, tuning=tuning)
        started.append(edge)
        edge.wait_ready()
        return edge

    yield start
    for edge in started:
        edge.kill()


# --- Lambda functions from their assets ------------------------------------------------------

STREAM_WORKER = "functions.stream_worker.handler.handler"
STREAM_FAILURE_DRAIN = "functions.stream_failures.handler.handler"
Invoke = Callable[[dict[str, Any], Any], Any]


class Functions:
    """The test region's Lambda functions as the local region runs them: each from its
    synthesized asset in its own execution environment (deployment.lambda_host), fed by an
    event source configured from the template's mapping (as event_sources.start_sources)."""

    def __init__(self, deployment: LocalDeployment, state_dir: Path) -> None:
        self.deployment = deployment
        self.state_dir = state_dir
        self.hosts: list[LambdaHost] = []
        self._sources: list[tuple[Callable[[], None], list[threading.Thread]]] = []

    def host(self, handler: str, tuning: dict[str, str] | None = None) -> LambdaHost:
        """The function's execution environment, with the test's tuning (each one of
        launch.TUNING_OVERRIDES) on top of the template's environment."""
        function = self.deployment.function(handler)
        host = self.deployment.lambda_host(function, self.state_dir, tuning)
        self.hosts.append(host)
        return host

    def kinesis(self, host: LambdaHost, *, invoke: Invoke | None = None) -> KinesisRunner:
        """Start the Kinesis event source of the host's function, from its mapping; it
        invokes `invoke` (a wrapper around the host) if given, else the host."""
        runner = kinesis_source(self.deployment, host, state_dir=self.state_dir, invoke=invoke)
        self._sources.append((runner.stop, runner.start()))
        return runner

    def sqs_source(self, host: LambdaHost, *, wait_seconds: int = 1) -> SqsEventSource:
        """The SQS event source of the host's function, from its mapping (not started)."""
        return sqs_source(self.deployment, host, wait_seconds=wait_seconds)

    def sqs(self, host: LambdaHost) -> SqsEventSource:
        """Start the SQS event source of the host's function, from its mapping."""
        source = self.sqs_source(host)
        thread = threading.Thread(target=source.run, name=host.function.logical_id, daemon=True)
        thread.start()
        self._sources.append((source.stop, [thread]))
        return source

    def close(self) -> None:
        for stop, _ in self._sources:
            stop()
        for _, threads in self._sources:
            for thread in threads:
                thread.join(15)
        for host in self.hosts:
            host.close()


@pytest.fixture
def functions(deployment: LocalDeployment, tmp_path: Path) -> Iterator[Functions]:
    started = Functions(deployment, tmp_path / "functions")
    yield started
    started.close()


def execution_environments(host: LambdaHost) -> list[psutil.Process]:
    """The live processes running the host's function (its execution environment)."""
    asset = str(host.function.asset_dir)
    return [
        p
        for p in psutil.Process().children()
        if asset in p.cmdline() and host.function.handler in p.cmdline()
    ]


def json_logs(log: Path) -> list[dict[str, Any]]:
    """The structured (Powertools) lines of a function's log."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                found.append(json.loads(line))
    return found


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

    item = client("dynamodb", aws.region, aws.endpoint_url).get_item(
        TableName=aws.table_name,
        Key={k: {"S": v} for k, v in resources.report_key(report_id).items()},
        ConsistentRead=True,
    )
    return records.from_item(item["Item"]) if "Item" in item else None
