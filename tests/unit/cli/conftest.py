"""A scripted ReportService on a real loopback port, for the SDK and CLI unit tests (the
code directly above the service interface). Reports live in a dict; errors are sent with
reportgrid.status, exactly as the edge sends them."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from reportgrid import errors
from reportgrid.status import to_rpc_status
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc as pb_grpc
from tests.unit.cli.flavours import FLAVOURS, Connect, connector

API_KEY = "rg_" + "k" * 43
RESULT = b"region,total\neu,10\nus,32\n"


@dataclass
class Script:
    reports: dict[str, pb.Report] = field(default_factory=dict)
    submits: list[tuple[pb.SubmitReportRequest, dict[str, str]]] = field(default_factory=list)
    watch_unavailable: bool = False
    watch_ends_unavailable: bool = False  # each watch: one report, then UNAVAILABLE
    watches: int = 0
    corrupt_download: bool = False
    gets: int = 0
    result: bytes = RESULT


class ScriptedService(pb_grpc.ReportServiceServicer):
    def __init__(self, script: Script) -> None:
        self.s = script
        self.lock = threading.Lock()

    def _auth(self, context: Any) -> None:
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {API_KEY}":
            context.abort_with_status(to_rpc_status(errors.Unauthenticated("unknown API key")))

    def _report(self, report_id: str, context: Any) -> pb.Report:
        if report_id not in self.s.reports:
            context.abort_with_status(to_rpc_status(errors.NotFound("report", report_id)))
        return self.s.reports[report_id]

    def SubmitReport(self, request: pb.SubmitReportRequest, context: Any) -> Any:
        self._auth(context)
        if request.kind != "summary":
            context.abort_with_status(
                to_rpc_status(errors.InvalidArgument.field("kind", "unknown kind 'nope'"))
            )
        with self.lock:
            self.s.submits.append((request, dict(context.invocation_metadata())))
            report_id = f"r{len(self.s.submits)}"
            digest = hashlib.sha256(self.s.result).hexdigest()
            self.s.reports[report_id] = pb.Report(
                report_id=report_id,
                kind=request.kind,
                state=pb.REPORT_STATE_SUCCEEDED,
                result=pb.ResultMetadata(
                    size_bytes=len(self.s.result),
                    sha256=digest,
                    row_count=2,
                    content_type="text/csv",
                ),
            )
        return pb.SubmitReportResponse(report_id=report_id, state=pb.REPORT_STATE_PENDING)

    def GetReport(self, request: pb.GetReportRequest, context: Any) -> Any:
        self._auth(context)
        self.s.gets += 1
        return self._report(request.report_id, context)

    def WatchReport(self, request: pb.WatchReportRequest, context: Any) -> Any:
        self._auth(context)
        with self.lock:
            self.s.watches += 1
        if self.s.watch_unavailable:
            context.abort_with_status(to_rpc_status(errors.Unavailable("cache down")))
        final = self._report(request.report_id, context)
        if self.s.watch_ends_unavailable:  # as the edge ends a watch at its longest duration
            yield pb.WatchReportResponse(
                report=pb.Report(report_id=final.report_id, state=pb.REPORT_STATE_RUNNING)
            )
            context.abort_with_status(to_rpc_status(errors.Unavailable("watch again")))
        yield pb.WatchReportResponse(
            report=pb.Report(report_id=final.report_id, state=pb.REPORT_STATE_PENDING)
        )
        yield pb.WatchReportResponse(
            report=pb.Report(report_id=final.report_id, state=pb.REPORT_STATE_RUNNING)
        )
        yield pb.WatchReportResponse(heartbeat=pb.Heartbeat())  # skipped by the SDK
        yield pb.WatchReportResponse(report=final)

    def ListReports(self, request: pb.ListReportsRequest, context: Any) -> Any:
        self._auth(context)
        ids = sorted(self.s.reports)
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = ids[start : start + size]
        token = str(start + size) if start + size < len(ids) else ""
        return pb.ListReportsResponse(
            reports=[self.s.reports[i] for i in page], next_page_token=token
        )

    def CancelReport(self, request: pb.CancelReportRequest, context: Any) -> Any:
        self._auth(context)
        return self._report(request.report_id, context)

    def DeleteReport(self, request: pb.DeleteReportRequest, context: Any) -> Any:
        self._auth(context)
        self._report(request.report_id, context)
        del self.s.reports[request.report_id]
        return pb.DeleteReportResponse(report_id=request.report_id)

    def DownloadReport(self, request: pb.DownloadReportRequest, context: Any) -> Any:
        self._auth(context)
        report = self._report(request.report_id, context)
        data = self.s.result + (b"x" if self.s.corrupt_download else b"")
        yield pb.DownloadReportChunk(metadata=report.result, data=data[:10], offset=0)
        yield pb.DownloadReportChunk(data=data[10:], offset=10)

    def ListReportKinds(self, request: pb.ListReportKindsRequest, context: Any) -> Any:
        self._auth(context)
        return pb.ListReportKindsResponse(
            kinds=[
                pb.ReportKind(
                    name="summary",
                    version=1,
                    description="Groups rows.",
                    params_schema='{"type": "object", "required": ["aggregates"], '
                    '"properties": {"aggregates": {"type": "array", "items": {"type": "object"}},'
                    ' "top_n": {"type": "integer", "minimum": 1}}}',
                    cost_class=pb.COST_CLASS_LIGHT,
                    output_formats=[pb.OUTPUT_FORMAT_CSV],
                )
            ]
        )


@dataclass
class Server:
    endpoint: str
    script: Script
    health: health.HealthServicer


def _start(serving: bool = True) -> tuple[grpc.Server, Server]:
    script = Script()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_ReportServiceServicer_to_server(ScriptedService(script), server)
    checker = health.HealthServicer()
    checker.set(
        "",
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, Server(f"127.0.0.1:{port}", script, checker)


@pytest.fixture
def service() -> Iterator[Server]:
    server, handle = _start()
    yield handle
    server.stop(None)


@pytest.fixture
def other_service() -> Iterator[Server]:
    """A second serving endpoint (with its own script)."""
    server, handle = _start()
    yield handle
    server.stop(None)


@pytest.fixture
def not_serving() -> Iterator[Server]:
    server, handle = _start(serving=False)
    yield handle
    server.stop(None)


@pytest.fixture(params=FLAVOURS)
def connect(request: pytest.FixtureRequest) -> Connect:
    """Each SDK test runs once with ReportClient and once with AsyncReportClient."""
    return connector(request.param)
