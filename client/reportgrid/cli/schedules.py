"""`reportgrid schedule create|list|get|update|pause|resume|delete` (docs/SCHEDULES.md).

Built on the report commands' options, output and failures (reportgrid/cli/commands.py,
whose `app` this group adds itself to): data on stdout, one error line on stderr, the
same exit codes.
"""

# ruff: noqa: PLR0917 -- typer maps each CLI option to one parameter of the command

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reportgrid import errors
from reportgrid.cli import commands, failures
from reportgrid.cli.commands import (
    DEFAULT_ENDPOINT,
    ApiKeyOpt,
    EndpointOpt,
    JsonOpt,
    LabelOpt,
    RootCertsOpt,
    TimeoutOpt,
    TlsOpt,
    _client,
    _ms,
    _print_json,
    describe_error,
    out,
    parse_params,
    to_json,
)
from reportgrid.cli.exit_codes import Exit
from reportgrid.client import OUTPUT_FORMATS, parse_data_format, parse_labels
from reportgrid.v1 import reports_pb2 as pb

app = typer.Typer(
    name="schedule",
    help="Run a report on a cron or rate schedule: create, list, get, update, pause, "
    "resume, delete.",
    no_args_is_help=True,
)


def describe_schedule_error(error: errors.ReportgridError) -> tuple[Exit, str]:
    """As the report commands say it, with the hints a schedule needs."""
    code, line = describe_error(error)
    if isinstance(error, errors.NotFound):
        line = f"error: NOT_FOUND: {error.message} (`reportgrid schedule list` shows yours)"
    elif isinstance(error, errors.FailedPrecondition) and error.subject == "version":
        line = (
            f"error: FAILED_PRECONDITION: {error.message.rstrip('.')} "
            "(`reportgrid schedule get <id>` shows the current version)"
        )
    elif isinstance(error, errors.ResourceExhausted) and error.subject == "schedules":
        line = f"error: RESOURCE_EXHAUSTED: {error.message}"
    return code, line


handles_errors = failures.handled(describe_schedule_error)

IdArg = Annotated[str, typer.Argument(help="The schedule id (sch-...).")]
CronOpt = Annotated[
    str | None,
    typer.Option("--cron", help='5-field cron, e.g. "0 8 * * MON" (matched in --tz).'),
]
RateOpt = Annotated[
    str | None, typer.Option("--rate", help='A fixed period, e.g. "5 minutes" or "1 day".')
]
TzOpt = Annotated[
    str | None, typer.Option("--tz", help="IANA time zone of --cron, e.g. Europe/Berlin.")
]
OverlapOpt = Annotated[
    str | None,
    typer.Option("--overlap", help="skip (default): no fire while the last report runs; allow."),
]
StartOpt = Annotated[
    str | None, typer.Option("--start", help="First fire at or after this ISO 8601 time.")
]
EndOpt = Annotated[str | None, typer.Option("--end", help="No fire after this ISO 8601 time.")]
DescriptionOpt = Annotated[str | None, typer.Option("--description", help="Free text.")]
VersionOpt = Annotated[
    int,
    typer.Option("--expected-version", help="Change it only at this version (0: any).", min=0),
]


def parse_time(text: str | None, option: str, field: str) -> datetime | None:
    """An ISO 8601 time; one without a zone is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise errors.InvalidArgument.field(
            field, f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-01-05T08:00:00+01:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _overlap_name(policy: pb.OverlapPolicy.ValueType) -> str:
    return pb.OverlapPolicy.Name(policy).removeprefix("OVERLAP_POLICY_").lower()


def _state(s: pb.Schedule) -> str:
    if s.paused:
        return "PAUSED"
    return "ACTIVE" if s.HasField("next_fire_time") else "ENDED"


def _lines(s: pb.Schedule) -> list[str]:
    template = s.template
    lines = [
        f"schedule_id: {s.schedule_id}",
        f"expression:  {s.expression}" + (f" ({s.time_zone})" if s.time_zone else ""),
        f"kind:        {template.kind}",
        f"state:       {_state(s)}",
        f"next fire:   {_ms(s.next_fire_time)}",
        f"last fire:   {_ms(s.last_fire_time)}",
        f"last report: {s.last_report_id or '-'}",
        f"overlap:     {_overlap_name(s.overlap_policy)}",
        f"fired:       {s.fired_count} (skipped {s.skipped_count})",
        f"version:     {s.version}",
        f"created:     {_ms(s.create_time)}",
        f"region:      {s.home_region or '-'}",
    ]
    if s.start_time.seconds or s.end_time.seconds:
        lines.append(f"window:      {_ms(s.start_time)} .. {_ms(s.end_time)}")
    if template.labels:
        labels = ",".join(f"{k}={v}" for k, v in sorted(template.labels.items()))
        lines.append(f"labels:      {labels}")
    if template.notify.url:
        lines.append(f"notify:      {template.notify.url}")
    if s.description:
        lines.append(f"description: {s.description}")
    return lines


def _show(schedule: pb.Schedule, as_json: bool) -> None:
    if as_json:
        _print_json(to_json(schedule))
    else:
        print("\n".join(_lines(schedule)))


@app.command()
@handles_errors
def create(
    kind: Annotated[str, typer.Option("--kind", "-k", help="The report kind each fire runs.")],
    cron: CronOpt = None,
    rate: RateOpt = None,
    tz: TzOpt = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value; the value is JSON when it parses."),
    ] = None,
    params_json: Annotated[
        str | None, typer.Option("--params-json", help="All params as a JSON object, or @file.")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", "-i", help="Data file sent with every fire.")
    ] = None,
    input_s3: Annotated[
        str | None, typer.Option("--input-s3", help="s3://bucket/key read by every fire.")
    ] = None,
    data_format: Annotated[
        str | None, typer.Option("--format", help="Input format: csv, json or parquet.")
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--output-format", help=f"One of {', '.join(OUTPUT_FORMATS)}."),
    ] = None,
    ttl: Annotated[
        float | None, typer.Option("--ttl", help="Keep each result this many seconds.")
    ] = None,
    label: LabelOpt = None,
    notify: Annotated[
        str | None, typer.Option("--notify", help="https URL to POST each report's end to.")
    ] = None,
    overlap: OverlapOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    description: DescriptionOpt = None,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Create a schedule. Prints its id (--json: the whole schedule)."""
    if (cron is None) == (rate is None):
        raise errors.InvalidArgument.field("schedule.expression", "give --cron or --rate")
    if input_file is not None and input_s3 is not None:
        raise errors.InvalidArgument.field("input", "give --input or --input-s3, not both")
    if input_s3 is not None and data_format is None:
        raise errors.InvalidArgument.field("input.format", "--input-s3 needs --format")
    params = parse_params(param or [], params_json)
    starts = parse_time(start, "--start", "schedule.start_time")
    ends = parse_time(end, "--end", "schedule.end_time")
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        schedule = client.create_schedule(
            kind,
            params,
            cron=cron,
            rate=rate,
            time_zone=tz,
            start_time=starts,
            end_time=ends,
            overlap=overlap,
            description=description,
            notify_url=notify,
            input_file=input_file,
            input_s3_uri=input_s3,
            input_format=parse_data_format(data_format) if data_format else None,
            output_format=output_format,
            ttl=ttl,
            labels=parse_labels(label or []),
        )
    if as_json:
        _print_json(to_json(schedule))
    else:
        print(schedule.schedule_id, flush=True)


@app.command("list")
@handles_errors
def list_(
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.", min=1)] = 50,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """List your schedules, newest first."""
    found: list[pb.Schedule] = []
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        for schedule in client.list_schedules(page_size=min(limit, 500)):
            found.append(schedule)
            if len(found) >= limit:
                break
    if as_json:
        _print_json([to_json(s) for s in found])
        return
    table = Table("SCHEDULE ID", "EXPRESSION", "TZ", "KIND", "STATE", "NEXT FIRE", "FIRED")
    for s in found:
        table.add_row(
            s.schedule_id,
            s.expression,
            s.time_zone,
            s.template.kind,
            _state(s),
            _ms(s.next_fire_time),
            str(s.fired_count),
        )
    out.print(table)


@app.command()
@handles_errors
def get(
    schedule_id: IdArg,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Show a schedule: its expression, next and last fire, counts and version."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        schedule = client.get_schedule(schedule_id)
    _show(schedule, as_json)


@app.command()
@handles_errors
def update(
    schedule_id: IdArg,
    cron: CronOpt = None,
    rate: RateOpt = None,
    tz: TzOpt = None,
    overlap: OverlapOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    description: DescriptionOpt = None,
    clear: Annotated[
        list[str] | None,
        typer.Option("--clear", help="Reset a field: start_time, end_time, description ..."),
    ] = None,
    expected_version: VersionOpt = 0,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Change a schedule's expression, zone, overlap, window or description."""
    if cron is not None and rate is not None:
        raise errors.InvalidArgument.field("schedule.expression", "give --cron or --rate, not both")
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        schedule = client.update_schedule(
            schedule_id,
            cron=cron,
            rate=rate,
            time_zone=tz,
            overlap=overlap,
            start_time=parse_time(start, "--start", "schedule.start_time"),
            end_time=parse_time(end, "--end", "schedule.end_time"),
            description=description,
            clear=clear or [],
            expected_version=expected_version,
        )
    _show(schedule, as_json)


@app.command()
@handles_errors
def pause(
    schedule_id: IdArg,
    expected_version: VersionOpt = 0,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Stop a schedule firing until it is resumed."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        schedule = client.pause_schedule(schedule_id, expected_version=expected_version)
    _show(schedule, as_json)


@app.command()
@handles_errors
def resume(
    schedule_id: IdArg,
    expected_version: VersionOpt = 0,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Let a paused schedule fire again, from its next fire after now."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        schedule = client.resume_schedule(schedule_id, expected_version=expected_version)
    _show(schedule, as_json)


@app.command()
@handles_errors
def delete(
    schedule_id: IdArg,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Delete a schedule; the reports it made stay."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        deleted = client.delete_schedule(schedule_id)
    if as_json:
        _print_json(to_json(deleted))
    else:
        print(f"deleted {deleted.schedule_id}")


commands.app.add_typer(app)
