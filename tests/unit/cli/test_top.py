"""`reportgrid top`: figures computed from EMF lines as the edge (grpc_edge.metrics) and
the workers (Powertools) print them."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from typer.testing import CliRunner

from grpc_edge.metrics import EdgeMetrics
from reportgrid.cli import top
from reportgrid.cli.commands import app

WINDOW = 60.0


def _edge_lines() -> list[str]:
    metrics = EdgeMetrics()
    shed = iter([0, 3])
    metrics.watch_counter("ShedRequests", lambda: next(shed))
    for ms in range(1, 101):  # SubmitReport: 1..100 ms, two of them UNAVAILABLE
        metrics.record("SubmitReport", "UNAVAILABLE" if ms > 98 else "OK", ms / 1000)
    for _ in range(30):
        metrics.record("GetReport", "NOT_FOUND", 0.002)
    out = io.StringIO()
    metrics.flush(out)
    return out.getvalue().splitlines()


def _worker_line(service: str, **values: list[float]) -> str:
    names = [{"Name": name, "Unit": "Count"} for name in values]
    stamp = int(time.time() * 1000)
    directive = {"Namespace": "Reportgrid", "Dimensions": [["service"]], "Metrics": names}
    body = {"_aws": {"Timestamp": stamp, "CloudWatchMetrics": [directive]}, "service": service}
    return json.dumps({**body, **values})


def _window(lines: list[str]) -> top.Window:
    window = top.Window(WINDOW)
    for line in lines:
        window.add(top.samples_of(line))
    return window


def test_requests_latency_reports_and_shedding_from_emf_lines() -> None:
    lines = [
        *_edge_lines(),
        _worker_line("reportgrid-stream-worker", ReportsCompleted=[1.0] * 12),
        _worker_line("reportgrid-stream-worker", ReportsFailed=[1.0] * 3),
        _worker_line("reportgrid-queue-worker", ReportsCompleted=[1.0] * 6),
        "2026-12-02 02:14:23,939 INFO functions.queue_worker polling",  # no metric
    ]
    figures = _window(lines).figures(int(time.time() * 1000))
    assert figures.requests_per_second == {
        "SubmitReport": {"OK": 98 / WINDOW, "UNAVAILABLE": 2 / WINDOW},
        "GetReport": {"NOT_FOUND": 30 / WINDOW},
    }
    submit = figures.latency_ms["SubmitReport"]
    assert (submit["p50"], submit["p99"], submit["samples"]) == (50.0, 99.0, 100.0)
    assert figures.reports_per_second == {
        "reportgrid-stream-worker": {"SUCCEEDED": 12 / WINDOW, "FAILED": 3 / WINDOW},
        "reportgrid-queue-worker": {"SUCCEEDED": 6 / WINDOW},
    }
    assert figures.shed == 3


def test_samples_older_than_the_window_drop_out() -> None:
    window = _window(_edge_lines())
    later = int(time.time() * 1000) + int(WINDOW * 1000) + 1000
    figures = window.figures(later)
    assert figures.requests_per_second == {}
    assert figures.latency_ms == {}


def test_the_command_tails_the_logs_and_prints_json(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "functions" / "us-east-1").mkdir(parents=True)
    (logs / "edge.log").write_text("\n".join(["listening", *_edge_lines()]) + "\n")
    worker = _worker_line("reportgrid-stream-worker", ReportsCompleted=[1.0] * 4)
    (logs / "functions" / "us-east-1" / "reportgrid-stream-worker.log").write_text(worker + "\n")
    result = CliRunner().invoke(
        app, ["top", "--state-dir", str(tmp_path), "--window", str(WINDOW), "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["requests_per_second"]["SubmitReport"]["UNAVAILABLE"] == 2 / WINDOW
    assert figures["reports_per_second"]["reportgrid-stream-worker"] == {"SUCCEEDED": 4 / WINDOW}
    assert figures["shed"] == 3


def test_a_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    log.write_text("one\ntwo\npart")
    tail = top.LogTail(tmp_path)
    assert tail.lines() == ["one", "two"]
    with log.open("a") as out:
        out.write("ial\nthree\n")
    assert tail.lines() == ["partial", "three"]
    assert tail.lines() == []


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(10, 0, -1)]
    assert (top.percentile(values, 50), top.percentile(values, 95)) == (5.0, 10.0)
    assert top.percentile(values, 1) == 1.0
