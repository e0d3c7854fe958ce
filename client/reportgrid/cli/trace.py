"""`reportgrid trace REPORT_ID`: one report's life as a timeline (component, region, time,
what happened, time since the step before), from

- the local region's logs (`make dev` keeps each process's output in <state>/logs/<name>.log
  and each Lambda function's in <state>/logs/functions/<region>/<service>.log), or
- CloudWatch Logs Insights in every region given (`--aws`, the operator's credentials;
  boto3 comes with the `admin` extra), over the log groups of each regional stack,
- and the report's own record (GetReport: accepted, started, ended, where it ran), when an
  API key is at hand.

A log line is about the report when it names the id. JSON lines (Powertools) give their
fields: `component`, `region`, `event`, `ts` (epoch ms) when a line has them
(reportgrid/cli/log_queries.py REPORT_FIELDS), else `service`, `message`, `timestamp`;
plain lines give their leading timestamp and text, and a trailing `{json}` (the workers'
reportgrid/tracing.py log_step) its fields. The report's trace id(s), from the lines'
`trace_id`, head the timeline (`trace_ids` in --json)."""

# ruff: noqa: PLR0917 -- typer maps each CLI option to one parameter of the command

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table

from reportgrid.cli.exit_codes import Exit
from reportgrid.cli.log_queries import check_report_id, report_life
from reportgrid.stack_names import regional_stack_name
from reportgrid.wire import CLIENT_API_KEY_ENV, CLIENT_ENDPOINT_ENV, EDGE_PORT

if TYPE_CHECKING:
    from mypy_boto3_logs.client import CloudWatchLogsClient

    from reportgrid.v1 import reports_pb2 as pb

DEFAULT_STATE_DIR: Final = Path(".reportgrid")
REGIONS_ENV: Final = "REPORTGRID_REGIONS"
_EMF_MARK: Final = '{"_aws":'
# Logs of the servers the local region runs, not of our processes.
_NOT_OURS: Final = ("moto", "redis")
# "2026-12-02 02:14:23,939" (logging's asctime, local time) or ISO 8601 with a zone.
_LEADING_TIME: Final = re.compile(
    r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:[.,](\d{1,6}))?(Z|[+-]\d\d:?\d\d)?"
)
_LEVEL_AND_LOGGER: Final = re.compile(r"^\s*(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+\s+")
# The regional log groups' logical ids (cdk/constructs/*: "<Component>Logs...") -> component.
_LOG_GROUP_COMPONENTS: Final = (
    ("EdgeLogs", "edge"),
    ("StreamWorkerLogs", "stream-worker"),
    ("QueueWorkerLogs", "queue-worker"),
    ("StandbyWorkerLogs", "standby"),
    ("StreamFailureDrainLogs", "stream-failures"),
    ("TaskMirrorLogs", "mirror"),
    ("CompletionEventsLogs", "events"),
    ("WebhooksLogs", "webhooks"),
    ("SchedulerLogs", "scheduler"),
    ("Canary", "canary"),
)
_DONE: Final = frozenset({"Complete", "Failed", "Cancelled", "Timeout", "Unknown"})
_MAX_GROUPS_PER_QUERY: Final = 50  # StartQuery's logGroupNames limit
# Before the id's creation time a log line about it cannot exist (clock skew aside).
_SKEW_MS: Final = 5 * 60 * 1000
_DAY_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened to the report."""

    at_ms: int
    component: str
    region: str
    event: str
    source: str  # the log file or log group, or "record"
    fields: dict[str, Any] = field(default_factory=dict)


# -- lines --------------------------------------------------------------------------------


def _epoch_ms(value: Any) -> int | None:
    """An epoch-ms number, or a timestamp text (a zone-less one is local time)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value if value > 1e11 else value * 1000)
    if not isinstance(value, str):
        return None
    found = _LEADING_TIME.match(value.strip())
    if found is None:
        return None
    day, clock, fraction, zone = found.groups()
    text = f"{day}T{clock}.{(fraction or '0').ljust(6, '0')}"
    if zone:
        text += "+00:00" if zone == "Z" else f"{zone[:3]}:{zone[-2:]}"
    stamp = datetime.fromisoformat(text)
    return int(stamp.timestamp() * 1000)


def parse_line(
    line: str,
    report_id: str,
    *,
    component: str,
    region: str,
    source: str,
    at_ms: int | None = None,
) -> Step | None:
    """The step a log line records, if it names the report; `at_ms` is the time of the
    log event when the source knows it (CloudWatch's @timestamp)."""
    text = line.strip()
    if report_id not in text or text.startswith(_EMF_MARK):
        return None
    document: Any = None
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
    if isinstance(document, dict):
        when = _epoch_ms(document.get("ts")) or _epoch_ms(document.get("timestamp")) or at_ms
        what = document.get("event") or document.get("message") or text
        fields = {k: v for k, v in document.items() if k not in {"message", "timestamp"}}
        return (
            None
            if when is None
            else Step(
                when,
                str(document.get("component") or component or document.get("service", "")),
                str(document.get("region") or region),
                str(what),
                source,
                fields,
            )
        )
    # The source's event time first: a plain line's time has no zone (logging's asctime is
    # the process's local time), right only on the machine that wrote it.
    when = at_ms or _epoch_ms(text)
    if when is None:
        return None
    found = _LEADING_TIME.match(text)
    rest = _LEVEL_AND_LOGGER.sub("", text[found.end() :] if found else text).strip()
    what, fields = _text_and_fields(rest)
    return Step(when, component, region, what, source, fields)


def _text_and_fields(rest: str) -> tuple[str, dict[str, Any]]:
    """A plain line's `<text> {json fields}` (reportgrid/tracing.py log_step), else the
    text alone."""
    head, brace, tail = rest.partition(" {")
    if brace and rest.endswith("}"):
        try:
            fields = json.loads(brace.strip() + tail)
        except ValueError:
            return rest, {}
        if isinstance(fields, dict):
            return head.strip(), fields
    return rest, {}


def trace_ids(steps: Iterable[Step]) -> list[str]:
    """The trace ids the report's lines name (one, unless it was submitted twice)."""
    return sorted({str(s.fields["trace_id"]) for s in steps if s.fields.get("trace_id")})


# -- the local region ---------------------------------------------------------------------


def _local_region(path: Path, logs: Path, regions: Sequence[str]) -> str:
    """functions/<region>/x.log names its region; "edge-a" is the first of --regions."""
    relative = path.relative_to(logs).parts
    if len(relative) == 3 and relative[0] == "functions":
        return relative[1]
    letter = path.stem.rpartition("-")[2]
    if "-" in path.stem and len(letter) == 1 and regions:
        index = ord(letter) - ord("a")
        return regions[index] if 0 <= index < len(regions) else letter
    return regions[0] if regions else "local"


def local_steps(logs: Path, report_id: str, regions: Sequence[str] = ()) -> list[Step]:
    """The report's steps in the local region's logs (<state>/logs)."""
    steps = []
    for path in sorted(logs.rglob("*.log")):
        if path.stem.startswith(_NOT_OURS):
            continue
        region = _local_region(path, logs, regions)
        source = path.relative_to(logs).as_posix()
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                step = parse_line(
                    line, report_id, component=path.stem, region=region, source=source
                )
                if step is not None:
                    steps.append(step)
    return steps


# -- CloudWatch Logs Insights -------------------------------------------------------------


def created_ms(report_id: str) -> int | None:
    """When the id says the report was accepted (reportgrid/ids.py: bytes 4-10 of the
    body); None for idempotency-keyed ids, which carry no time. Not verified: only a
    search window comes of it."""
    try:
        raw = base64.b32decode(report_id.removeprefix("rpt_").upper() + "====")
    except (binascii.Error, ValueError):
        return None
    keyed = len(raw) < 10 or bool(raw[1] & 0x01)
    return None if keyed else int.from_bytes(raw[4:10], "big") or None


def component_of_log_group(name: str) -> str:
    for marker, component in _LOG_GROUP_COMPONENTS:
        if marker in name:
            return component
    return name


def query_window(report_id: str, now_ms: int, since_hours: float) -> tuple[int, int]:
    """StartQuery's (startTime, endTime) in epoch seconds."""
    start = created_ms(report_id)
    start = now_ms - int(since_hours * 3600 * 1000) if start is None else start - _SKEW_MS
    return start // 1000, now_ms // 1000 + 1


def rows_to_steps(rows: Iterable[Sequence[Any]], report_id: str, region: str) -> list[Step]:
    """GetQueryResults rows ([{field, value}, ...]) as steps; a row is kept only if its
    message names the report (the query filters already; a partial emulation may not)."""
    steps = []
    for row in rows:
        values = {str(cell["field"]): str(cell["value"]) for cell in row}
        group = values.get("@log", "")
        group = group.partition(":")[2] or group  # "<account>:<group>" across accounts
        stamp = values.get("@timestamp")
        at_ms = _cloudwatch_ms(stamp) if stamp else None
        step = parse_line(
            values.get("@message", ""),
            report_id,
            component=component_of_log_group(group),
            region=region,
            source=group,
            at_ms=at_ms,
        )
        if step is not None:
            steps.append(step)
    return steps


def _cloudwatch_ms(value: str) -> int | None:
    """@timestamp: "2026-12-02 02:14:25.628" in UTC, or epoch ms (some emulations)."""
    if value.isdigit():
        return int(value)
    return _epoch_ms(value.strip() + "Z")


def log_groups(logs: CloudWatchLogsClient, region: str) -> list[str]:
    names = []
    paginator = logs.get_paginator("describe_log_groups")
    for page in paginator.paginate(logGroupNamePrefix=regional_stack_name(region)):
        names += [
            g["logGroupName"]
            for g in page.get("logGroups", [])
            if "FlowLogs" not in g["logGroupName"]
        ]
    return names


def cloud_steps(
    report_id: str,
    regions: Sequence[str],
    *,
    clients: Callable[[str], CloudWatchLogsClient],
    since_hours: float = 24.0,
    poll_seconds: float = 1.0,
    timeout_seconds: float = 120.0,
) -> list[Step]:
    """Run the report-life query in every region (all started before any is awaited)."""
    now_ms = int(time.time() * 1000)
    start, end = query_window(report_id, now_ms, since_hours)
    running: list[tuple[str, CloudWatchLogsClient, str]] = []
    for region in regions:
        logs = clients(region)
        names = log_groups(logs, region)
        for i in range(0, len(names), _MAX_GROUPS_PER_QUERY):
            started = logs.start_query(
                logGroupNames=names[i : i + _MAX_GROUPS_PER_QUERY],
                startTime=start,
                endTime=end,
                queryString=report_life(report_id),
            )
            running.append((region, logs, started["queryId"]))
    steps: list[Step] = []
    deadline = time.monotonic() + timeout_seconds
    for region, logs, query_id in running:
        while True:
            result = logs.get_query_results(queryId=query_id)
            if result["status"] in _DONE or time.monotonic() > deadline:
                break
            time.sleep(poll_seconds)
        if result["status"] != "Complete":
            raise QueryFailed(f"{region}: the Logs Insights query ended {result['status']}")
        steps += rows_to_steps(result.get("results", []), report_id, region)
    return steps


class QueryFailed(Exception):
    """A Logs Insights query did not complete."""


def boto3_clients(endpoint_url: str | None) -> Callable[[str], CloudWatchLogsClient]:
    try:
        import boto3  # noqa: PLC0415 -- only `--aws` needs it (the `admin` extra)
    except ModuleNotFoundError:
        raise typer.BadParameter("--aws needs boto3: pip install 'reportgrid[admin]'") from None

    def logs_in(region: str) -> CloudWatchLogsClient:
        return boto3.client("logs", region_name=region, endpoint_url=endpoint_url)

    return logs_in


# -- the record ---------------------------------------------------------------------------


def record_steps(report: pb.Report) -> list[Step]:
    """What the report's record says: accepted, started, ended, where it ran."""
    from reportgrid.client import state_name  # noqa: PLC0415 -- grpc only when used

    region = report.region or "?"
    found = []
    for stamp, event in (
        (report.create_time, "accepted"),
        (report.start_time, "started"),
        (report.end_time, f"ended {state_name(report.state)}"),
    ):
        if stamp.seconds or stamp.nanos:
            found.append(Step(stamp.ToMilliseconds(), "record", region, event, "record"))
    return found


# -- the timeline -------------------------------------------------------------------------


def timeline(steps: Iterable[Step]) -> list[dict[str, Any]]:
    """Steps oldest first, each with its time since the first and since the one before."""
    ordered = sorted(steps, key=lambda s: (s.at_ms, s.source))
    first = ordered[0].at_ms if ordered else 0
    rows = []
    previous = first
    for step in ordered:
        rows.append(
            {
                "at": datetime.fromtimestamp(step.at_ms / 1000, UTC).isoformat(
                    timespec="milliseconds"
                ),
                "at_ms": step.at_ms,
                "since_start_ms": step.at_ms - first,
                "delta_ms": step.at_ms - previous,
                "component": step.component,
                "region": step.region,
                "event": step.event,
                "source": step.source,
                "fields": step.fields,
            }
        )
        previous = step.at_ms
    return rows


def _seconds(ms: int) -> str:
    return f"+{ms / 1000:.3f}s"


def render(rows: Sequence[dict[str, Any]], console: Console) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("since start", "step", "time (UTC)", "region", "component", "what"):
        table.add_column(column, no_wrap=column != "what")
    for row in rows:
        table.add_row(
            _seconds(row["since_start_ms"]),
            _seconds(row["delta_ms"]),
            row["at"][11:23],
            row["region"],
            row["component"],
            row["event"],
        )
    console.print(table)


def _regions(value: str | None) -> list[str]:
    return [r.strip() for r in (value or "").split(",") if r.strip()]


def command(
    report_id: Annotated[str, typer.Argument(help="The report's id (rpt_...).")],
    aws: Annotated[
        bool, typer.Option("--aws", help="Query CloudWatch Logs in every --regions region.")
    ] = False,
    regions: Annotated[
        str | None,
        typer.Option(
            "--regions",
            envvar=REGIONS_ENV,
            help="Comma-separated regions, as reportgrid:regions (with --aws: required; "
            "locally: names the regions of a two-region `make dev`).",
        ),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="The local region's state (its logs/).")
    ] = DEFAULT_STATE_DIR,
    since_hours: Annotated[
        float,
        typer.Option("--since-hours", help="With --aws, for keyed ids: how far back to look."),
    ] = 24.0,
    endpoint_url: Annotated[
        str | None, typer.Option("--aws-endpoint-url", hidden=True, help="An AWS emulation.")
    ] = None,
    endpoint: Annotated[
        str, typer.Option("--endpoint", "-e", envvar=CLIENT_ENDPOINT_ENV)
    ] = f"127.0.0.1:{EDGE_PORT}",
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar=CLIENT_API_KEY_ENV, help="Adds the record's steps."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show a report's life: every log line that names it, in order, with durations."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        check_report_id(report_id)
    except ValueError as bad:
        err.print(f"error: {bad}")
        raise typer.Exit(Exit.USAGE) from None
    names = _regions(regions)
    if aws:
        if not names:
            err.print(
                "error: --aws needs --regions (or REPORTGRID_REGIONS), e.g. eu-west-1,us-east-1"
            )
            raise typer.Exit(Exit.USAGE)
        try:
            logs = cloud_steps(
                report_id, names, clients=boto3_clients(endpoint_url), since_hours=since_hours
            )
        except QueryFailed as failed:
            err.print(f"error: {failed}")
            raise typer.Exit(Exit.UNAVAILABLE) from None
    else:
        logs_dir = state_dir / "logs"
        if not logs_dir.is_dir():
            err.print(f"error: no local logs in {logs_dir}; start `make dev` or give --state-dir")
            raise typer.Exit(Exit.USAGE)
        logs = local_steps(logs_dir, report_id, names)
    record = _record(report_id, endpoint, api_key, err) if api_key else []
    rows = timeline(itertools.chain(logs, record))
    traces = trace_ids(logs)
    if as_json:
        print(json.dumps({"report_id": report_id, "trace_ids": traces, "steps": rows}, default=str))
    else:
        if traces:
            print(f"trace {', '.join(traces)}")
        render(
            rows,
            Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250),
        )
    if not rows:
        err.print(f"no log line names {report_id}")
        raise typer.Exit(Exit.NOT_FOUND)


def _record(report_id: str, endpoint: str, api_key: str, err: Console) -> list[Step]:
    from reportgrid import errors  # noqa: PLC0415 -- grpc only when used
    from reportgrid.client import ReportClient  # noqa: PLC0415

    try:
        with ReportClient(endpoint, api_key=api_key, timeout=10.0) as client:
            return record_steps(client.get(report_id))
    except errors.ReportgridError as failed:
        err.print(f"(no record steps: {type(failed).__name__}: {failed})")
        return []
