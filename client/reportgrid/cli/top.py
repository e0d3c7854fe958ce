"""`reportgrid top`: the local region at work, from the metrics its processes print.

`make dev` keeps every process's output under <state>/logs, EMF documents included (the
lines CloudWatch would turn into the dashboards' metrics). This view tails them and shows,
over the last `--window` seconds: requests/s by method and status, latency p50/p99 by
method, reports/s by end state and worker, shed requests, and — with `--aws-endpoint-url`,
the local moto server — the depth of every reportgrid-* queue.

The edge flushes its metrics once a minute (grpc_edge/metrics.py), so figures move in
minute steps and a window under a minute shows gaps. Latency percentiles are of the edge's
samples (at most 100 a method a flush), as CloudWatch's are."""

# ruff: noqa: PLR0917 -- typer maps each CLI option to one parameter of the command

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

DEFAULT_STATE_DIR: Final = Path(".reportgrid")
_EMF_MARK: Final = '{"_aws":'
# Metric names (reportgrid/resources.py METRIC; the client has no server code to import).
REQUESTS: Final = "Requests"
REQUEST_LATENCY: Final = "RequestLatency"
SHED_REQUESTS: Final = "ShedRequests"
# Which end state each worker metric counts.
_REPORT_STATES: Final = {"ReportsCompleted": "SUCCEEDED", "ReportsFailed": "FAILED"}
_QUEUE_PREFIX: Final = "reportgrid-"


@dataclass(frozen=True, slots=True)
class Sample:
    at_ms: int
    service: str
    method: str | None
    code: str | None
    name: str
    values: tuple[float, ...]


@dataclass
class Figures:
    """What the view shows, computed over one window."""

    window_seconds: float
    requests_per_second: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # p50, p99, samples
    reports_per_second: dict[str, dict[str, float]] = field(default_factory=dict)
    shed: int = 0
    queues: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_seconds,
            "requests_per_second": self.requests_per_second,
            "latency_ms": self.latency_ms,
            "reports_per_second": self.reports_per_second,
            "shed": self.shed,
            "queues": self.queues,
        }


def _values(value: Any) -> tuple[float, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(float(v) for v in items if isinstance(v, int | float) and not isinstance(v, bool))


def samples_of(line: str) -> list[Sample]:
    """The metric values of one EMF line (none for any other line)."""
    text = line.strip()
    if not text.startswith(_EMF_MARK):
        return []
    try:
        document = json.loads(text)
        directives = document["_aws"]["CloudWatchMetrics"]
        at_ms = int(document["_aws"]["Timestamp"])
    except (ValueError, KeyError, TypeError):
        return []
    names = {m["Name"] for d in directives for m in d.get("Metrics", []) if "Name" in m}
    method, code = document.get("Method"), document.get("Code")
    return [
        Sample(
            at_ms,
            str(document.get("service", "")),
            method if isinstance(method, str) else None,
            code if isinstance(code, str) else None,
            name,
            values,
        )
        for name in sorted(names)
        if (values := _values(document.get(name)))
    ]


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


class Window:
    """The samples of the last `seconds` (by their EMF timestamps)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: deque[Sample] = deque()

    def add(self, samples: Iterable[Sample]) -> None:
        self._samples.extend(samples)

    def figures(self, now_ms: int, queues: Mapping[str, dict[str, int]] | None = None) -> Figures:
        since = now_ms - self.seconds * 1000
        while self._samples and self._samples[0].at_ms < since:
            self._samples.popleft()
        current = [s for s in self._samples if s.at_ms >= since]
        figures = Figures(self.seconds, queues=dict(queues or {}))
        latencies: dict[str, list[float]] = {}
        for sample in current:
            if sample.name == REQUESTS and sample.method and sample.code:
                by_code = figures.requests_per_second.setdefault(sample.method, {})
                by_code[sample.code] = by_code.get(sample.code, 0.0) + sum(sample.values)
            elif sample.name == REQUEST_LATENCY and sample.method:
                latencies.setdefault(sample.method, []).extend(sample.values)
            elif sample.name == SHED_REQUESTS:
                figures.shed += int(sum(sample.values))
            elif (state := _REPORT_STATES.get(sample.name)) is not None:
                by_state = figures.reports_per_second.setdefault(sample.service, {})
                by_state[state] = by_state.get(state, 0.0) + sum(sample.values)
        for counts in (*figures.requests_per_second.values(), *figures.reports_per_second.values()):
            for key in counts:
                counts[key] /= self.seconds
        figures.latency_ms = {
            method: {
                "p50": percentile(values, 50),
                "p99": percentile(values, 99),
                "samples": float(len(values)),
            }
            for method, values in latencies.items()
        }
        return figures


class LogTail:
    """The new lines of every *.log under a directory since the last read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}

    def lines(self) -> list[str]:
        found: list[str] = []
        for path in sorted(self.directory.rglob("*.log")):
            offset = self._offsets.get(path, 0)
            if path.stat().st_size < offset:
                offset = 0  # truncated: a new run
            with path.open("rb") as log:
                log.seek(offset)
                data = log.read()
            complete = data.rpartition(b"\n")[0]
            if complete:
                self._offsets[path] = offset + len(complete) + 1
                found += complete.decode(errors="replace").splitlines()
        return found


def queue_depths(endpoint_url: str, region: str) -> dict[str, dict[str, int]]:
    """Every reportgrid-* queue's visible and in-flight messages (the local moto server)."""
    try:
        import boto3  # noqa: PLC0415 -- only queue depths need it (the `admin` extra)
    except ModuleNotFoundError:
        raise typer.BadParameter(
            "queue depths need boto3: pip install 'reportgrid[admin]'"
        ) from None
    sqs = boto3.client("sqs", region_name=region, endpoint_url=endpoint_url)
    depths = {}
    for url in sqs.list_queues(QueueNamePrefix=_QUEUE_PREFIX).get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[url.rsplit("/", 1)[-1]] = {
            "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        }
    return depths


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def render(figures: Figures) -> Group:
    requests = Table(title=f"Requests/s (last {figures.window_seconds:.0f} s)", box=None)
    for column in ("method", "code", "req/s", "p50 ms", "p99 ms"):
        requests.add_column(column, justify="left" if column in {"method", "code"} else "right")
    for method in sorted(figures.requests_per_second):
        latency = figures.latency_ms.get(method, {})
        for code, rate in sorted(figures.requests_per_second[method].items()):
            requests.add_row(
                method,
                code,
                f"{rate:.2f}",
                _number(latency.get("p50", math.nan)),
                _number(latency.get("p99", math.nan)),
            )
    reports = Table(title="Reports/s by end state", box=None)
    for column in ("worker", "state", "reports/s"):
        reports.add_column(column)
    for service in sorted(figures.reports_per_second):
        for state, rate in sorted(figures.reports_per_second[service].items()):
            reports.add_row(service, state, f"{rate:.2f}")
    queues = Table(title="Queues", box=None)
    for column in ("queue", "visible", "in flight"):
        queues.add_column(column)
    for name, depth in sorted(figures.queues.items()):
        queues.add_row(name, str(depth["visible"]), str(depth["in_flight"]))
    return Group(requests, reports, queues, f"Shed requests: {figures.shed}")


def command(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="The local region's state (its logs/).")
    ] = DEFAULT_STATE_DIR,
    window: Annotated[float, typer.Option("--window", help="Seconds the figures cover.")] = 120.0,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.")] = 2.0,
    endpoint_url: Annotated[
        str | None,
        typer.Option("--aws-endpoint-url", help="The local moto server, for queue depths."),
    ] = None,
    region: Annotated[str, typer.Option("--region", help="The queues' region.")] = "us-east-1",
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One snapshot as JSON.")] = False,
) -> None:
    """A live view of the local region: requests, latency, reports, queues, shedding."""
    logs = state_dir / "logs"
    if not logs.is_dir():
        Console(stderr=True).print(f"error: no local logs in {logs}; start `make dev` first")
        raise typer.Exit(2)
    tail, samples = LogTail(logs), Window(window)

    def snapshot() -> Figures:
        for line in tail.lines():
            samples.add(samples_of(line))
        depths = queue_depths(endpoint_url, region) if endpoint_url else None
        return samples.figures(int(time.time() * 1000), depths)

    if as_json or once:
        figures = snapshot()
        if as_json:
            print(json.dumps(figures.as_dict()))
        else:
            Console().print(render(figures))
        return
    _live(snapshot, interval)


def _live(snapshot: Callable[[], Figures], interval: float) -> None:
    with Live(render(snapshot()), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(render(snapshot()), refresh=True)
        except KeyboardInterrupt:
            pass
