"""The `reportgrid` commands (typer, rich: the `cli` extra).

Data goes to stdout (ids, JSON, tables); progress and errors go to stderr. Every command
takes `--json`. Errors are one line with the status and what to fix, and the exit code says
what kind of failure it was (see reportgrid.cli.exit_codes and docs/USAGE.md).
"""

# ruff: noqa: PLR0917 -- typer maps each CLI option to one parameter of the command

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from reportgrid import errors
from reportgrid.cli import failures, top, trace
from reportgrid.cli.admin import app as admin_app
from reportgrid.cli.exit_codes import Exit
from reportgrid.client import (
    OUTPUT_FORMATS,
    ChecksumMismatch,
    ReportClient,
    error_summary,
    parse_data_format,
    parse_labels,
    state_name,
)
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.wire import CLIENT_API_KEY_ENV, CLIENT_ENDPOINT_ENV, EDGE_PORT

DEFAULT_ENDPOINT = f"127.0.0.1:{EDGE_PORT}"


app = typer.Typer(
    name="reportgrid",
    help="Submit, follow and download Reportgrid reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(admin_app)  # `reportgrid admin ...`: operators (reportgrid/cli/admin.py)
app.command("trace")(trace.command)  # one report's life (reportgrid/cli/trace.py)
app.command("top")(top.command)  # the local region at work (reportgrid/cli/top.py)
# Piped output is not cut to 80 columns: ids must survive `| grep`.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = failures.err

# -- options every remote command takes ---------------------------------------------------
EndpointOpt = Annotated[
    str,
    typer.Option(
        "--endpoint",
        "-e",
        envvar=CLIENT_ENDPOINT_ENV,
        help="host:port of the service; a comma-separated list fails over in order.",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar=CLIENT_API_KEY_ENV, help="API key (`make dev` prints one)."),
]
TlsOpt = Annotated[bool, typer.Option("--tls", help="Use TLS (system roots).")]
RootCertsOpt = Annotated[
    Path | None,
    typer.Option("--root-certs", help="PEM file of the CA to trust (implies --tls).", exists=True),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Deadline of each call, seconds.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

P = ParamSpec("P")
R = TypeVar("R")


_HINTS: dict[type[errors.ReportgridError], tuple[Exit, str]] = {
    errors.InvalidArgument: (Exit.USAGE, "fix the named field"),
    errors.NotFound: (Exit.NOT_FOUND, "check the report id (`reportgrid list` shows yours)"),
    errors.Unauthenticated: (
        Exit.UNAUTHENTICATED,
        f"pass --api-key or set {CLIENT_API_KEY_ENV} (`make dev` prints a development key)",
    ),
    errors.PermissionDenied: (
        Exit.UNAUTHENTICATED,
        "the key is valid but may not be used now; ask your operator",
    ),
    errors.Unavailable: (
        Exit.UNAVAILABLE,
        f"is the server running? check --endpoint/{CLIENT_ENDPOINT_ENV}, or start one "
        "with `make dev`",
    ),
    errors.DeadlineExceeded: (Exit.UNAVAILABLE, "raise --timeout or try again"),
    errors.FailedPrecondition: (
        Exit.PRECONDITION,
        "the report's state does not allow this; see `reportgrid get <id>`",
    ),
    errors.Conflict: (Exit.PRECONDITION, "a concurrent change won; run the command again"),
    errors.IdempotencyKeyReused: (
        Exit.IDEMPOTENCY_KEY_REUSED,
        "send the same request to get that report, or use another --idempotency-key",
    ),
    errors.ResourceExhausted: (Exit.RESOURCE_EXHAUSTED, "slow down and retry"),
    ChecksumMismatch: (Exit.CHECKSUM, "run the download again"),
    errors.Internal: (Exit.INTERNAL, "a server-side defect; retry, and report it if it stays"),
}
_STATUS_NAMES: dict[type[errors.ReportgridError], str] = {
    errors.InvalidArgument: "INVALID_ARGUMENT",
    errors.NotFound: "NOT_FOUND",
    errors.Unauthenticated: "UNAUTHENTICATED",
    errors.PermissionDenied: "PERMISSION_DENIED",
    errors.Unavailable: "UNAVAILABLE",
    errors.DeadlineExceeded: "DEADLINE_EXCEEDED",
    errors.FailedPrecondition: "FAILED_PRECONDITION",
    errors.Conflict: "ABORTED",
    errors.IdempotencyKeyReused: "IDEMPOTENCY_KEY_REUSED",
    errors.ResourceExhausted: "RESOURCE_EXHAUSTED",
    ChecksumMismatch: "CHECKSUM_MISMATCH",
    errors.Internal: "INTERNAL",
}


def describe_error(error: errors.ReportgridError) -> tuple[Exit, str]:
    """The exit code and the one line shown for an error."""
    for cls in type(error).__mro__:
        if cls in _HINTS:
            code, hint = _HINTS[cls]
            message = error.message.rstrip(".")
            if isinstance(error, errors.ResourceExhausted):
                hint = f"retry after {error.retry_after:g}s"
            if isinstance(error, errors.InvalidArgument) and any(
                v.field.startswith(("params", "kind", "output_format", "input"))
                for v in error.violations
            ):
                hint = "`reportgrid kinds` lists each kind's params and formats"
            return code, f"error: {_STATUS_NAMES[cls]}: {message} ({hint})"
    return Exit.INTERNAL, f"error: {error.message}"


# Every command's failures: one line and the exit code of the error's kind.
handles_errors = failures.handled(describe_error)


def _client(
    endpoint: str, api_key: str | None, tls: bool, root_certs: Path | None, timeout: float
) -> ReportClient:
    return ReportClient(
        endpoint,
        api_key=api_key,
        tls=tls,
        root_certificates=root_certs.read_bytes() if root_certs else None,
        timeout=timeout,
    )


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _print_json(value: object) -> None:
    out.print_json(data=value) if out.is_terminal else print(json.dumps(value))


def parse_params(pairs: Iterable[str], params_json: str | None) -> dict[str, Any]:
    """`--params-json` (an object, or @file) overlaid by each `--param k=v`; a value is
    parsed as JSON when it parses (numbers, lists, objects, true), else kept as a string."""
    params: dict[str, Any] = {}
    if params_json:
        text = Path(params_json[1:]).read_text() if params_json.startswith("@") else params_json
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as error:
            raise errors.InvalidArgument.field(
                "params", f"--params-json is not valid JSON ({error.msg} at char {error.pos})"
            ) from None
        if not isinstance(loaded, dict):
            raise errors.InvalidArgument.field("params", "--params-json must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise errors.InvalidArgument.field(
                "params", f"--param {pair!r} must look like key=value"
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params


def _ms(stamp: Any) -> str:
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return str(stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))


def _labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


LabelOpt = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="key=value (repeatable)."),
]
ViewOpt = Annotated[
    str, typer.Option("--view", help="basic, or full: also what it was submitted with.")
]


def _report_lines(report: pb.Report) -> list[str]:
    lines = [
        f"report_id:  {report.report_id}",
        f"kind:       {report.kind}",
        f"state:      {state_name(report.state)}",
        f"created:    {_ms(report.create_time)}",
        f"started:    {_ms(report.start_time)}",
        f"ended:      {_ms(report.end_time)}",
        f"attempts:   {report.attempts}",
        f"region:     {report.region or '-'}",
    ]
    if report.labels:
        lines.append(f"labels:     {_labels_text(report.labels)}")
    if report.HasField("error"):
        lines.append(f"error:      {error_summary(report)}")
    if report.HasField("spec"):
        spec = report.spec
        lines.append(f"version:    {spec.kind_version}")
        lines.append(f"params:     {json.dumps(json_format.MessageToDict(spec.params))}")
        if spec.input.HasField("inline"):
            lines.append(
                f"input:      {pb.DataFormat.Name(spec.input.format)} inline, "
                f"{spec.input.inline.size_bytes} bytes, sha256 {spec.input.inline.sha256}"
            )
        elif spec.input.s3_uri:
            lines.append(f"input:      {pb.DataFormat.Name(spec.input.format)} {spec.input.s3_uri}")
        lines.append(f"ttl:        {spec.ttl.seconds}s")
        lines.append(f"durability: {pb.Durability.Name(spec.durability)}")
    if report.HasField("result"):
        r = report.result
        lines.append(
            f"result:     {r.row_count} rows, {r.size_bytes} bytes, {r.content_type}, "
            f"sha256 {r.sha256}"
        )
    return lines


def _finish(report: pb.Report) -> Exit:
    """Exit 1 unless the report SUCCEEDED, saying why on stderr."""
    if report.state == pb.REPORT_STATE_SUCCEEDED:
        return Exit.OK
    why = f": {error_summary(report)}" if report.HasField("error") else ""
    err.print(f"report {report.report_id} ended {state_name(report.state)}{why}", markup=False)
    return Exit.REPORT_NOT_SUCCEEDED


def _watch(client: ReportClient, report_id: str, as_json: bool, timeout: float | None) -> pb.Report:
    """Wait for the report, showing a live status line (or JSON lines)."""
    started = time.monotonic()
    if as_json or not err.is_terminal:

        def show(report: pb.Report) -> None:
            if as_json:
                print(json.dumps(to_json(report)), flush=True)

        return client.wait(report_id, timeout=timeout, on_update=show)
    with err.status(f"{report_id} …") as status:

        def update(report: pb.Report) -> None:
            status.update(
                f"{report_id}  [bold]{state_name(report.state)}[/]  "
                f"attempts {report.attempts}  {time.monotonic() - started:.1f}s"
            )

        report = client.wait(report_id, timeout=timeout, on_update=update)
    err.print(f"{report_id} {state_name(report.state)} in {time.monotonic() - started:.1f}s")
    return report


# -- commands ------------------------------------------------------------------------------


@app.command()
@handles_errors
def submit(
    kind: Annotated[str, typer.Argument(help="The report kind (see `reportgrid kinds`).")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value; the value is JSON when it parses."),
    ] = None,
    params_json: Annotated[
        str | None, typer.Option("--params-json", help="All params as a JSON object, or @file.")
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Data file; format from its extension."),
    ] = None,
    input_s3: Annotated[
        str | None, typer.Option("--input-s3", help="s3://bucket/key of the data (use --format).")
    ] = None,
    data_format: Annotated[
        str | None, typer.Option("--format", help="Input format: csv, json or parquet.")
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--output-format", help=f"One of {', '.join(OUTPUT_FORMATS)}."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Default: a new random key.")
    ] = None,
    ttl: Annotated[
        float | None, typer.Option("--ttl", help="Keep the result this many seconds.")
    ] = None,
    label: LabelOpt = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait until it ends.")] = False,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Download the result here (implies --wait)."),
    ] = None,
    wait_timeout: Annotated[
        float | None, typer.Option("--wait-timeout", help="Give up waiting after seconds.")
    ] = None,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Submit a report. Prints its id; with --wait/--out, follows it to the end."""
    if input_file is not None and input_s3 is not None:
        raise errors.InvalidArgument.field("input", "give --input or --input-s3, not both")
    if input_s3 is not None and data_format is None:
        raise errors.InvalidArgument.field("input.format", "--input-s3 needs --format")
    params = parse_params(param or [], params_json)
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        accepted = client.submit(
            kind,
            params,
            input_file=input_file,
            input_s3_uri=input_s3,
            input_format=parse_data_format(data_format) if data_format else None,
            output_format=output_format,
            idempotency_key=idempotency_key,
            ttl=ttl,
            labels=parse_labels(label or []),
        )
        if as_json:
            print(json.dumps(to_json(accepted)), flush=True)
        else:
            print(accepted.report_id, flush=True)
        if not (wait or out_path):
            return
        report = _watch(client, accepted.report_id, as_json, wait_timeout)
        code = _finish(report)
        if code == Exit.OK and out_path is not None:
            meta = client.download(report.report_id, out_path)
            if not as_json:
                err.print(f"wrote {meta.size_bytes} bytes ({meta.row_count} rows) to {out_path}")
    raise typer.Exit(code)


@app.command()
@handles_errors
def get(
    report_id: str,
    content: Annotated[
        bool, typer.Option("--content", help="Print the result (small results only).")
    ] = False,
    view: ViewOpt = "basic",
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Show a report's state and result metadata."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        report = client.get(report_id, include_content=content, view=view)
    if as_json:
        _print_json(to_json(report))
    else:
        print("\n".join(_report_lines(report)))
        if content and report.result.content:
            sys.stdout.flush()
            sys.stdout.buffer.write(report.result.content)


@app.command()
@handles_errors
def watch(
    report_id: str,
    wait_timeout: Annotated[
        float | None, typer.Option("--wait-timeout", help="Give up after seconds.")
    ] = None,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Follow a report until it ends (a live status line; --json prints each state)."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        report = _watch(client, report_id, as_json, wait_timeout)
    if not as_json:
        print("\n".join(_report_lines(report)))
    raise typer.Exit(_finish(report))


def _parse_states(names: Iterable[str]) -> list[pb.ReportState.ValueType]:
    states = []
    for name in names:
        try:
            states.append(pb.ReportState.Value("REPORT_STATE_" + name.upper()))
        except ValueError:
            known = ", ".join(state_name(v) for v in pb.ReportState.values() if v)
            raise errors.InvalidArgument.field(
                "states", f"unknown state {name!r}; use one of {known}"
            ) from None
    return states


@app.command("list")
@handles_errors
def list_(
    state: Annotated[
        list[str] | None, typer.Option("--state", "-s", help="Only this state (repeatable).")
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", "-k", help="Only this kind (repeatable).")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Only reports with key=value (repeatable; all match)."),
    ] = None,
    view: ViewOpt = "basic",
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.", min=1)] = 50,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """List your reports, newest first."""
    states = _parse_states(state or [])
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        reports = []
        matching = client.list(
            states=states,
            kinds=kind or [],
            labels=parse_labels(label or []),
            view=view,
            page_size=min(limit, 500),
        )
        for report in matching:
            reports.append(report)
            if len(reports) >= limit:
                break
    if as_json:
        _print_json([to_json(r) for r in reports])
        return
    table = Table("REPORT ID", "KIND", "STATE", "CREATED", "ENDED", "ROWS", "BYTES", "LABELS")
    for r in reports:
        done = r.HasField("result")
        table.add_row(
            r.report_id,
            r.kind,
            state_name(r.state),
            _ms(r.create_time),
            _ms(r.end_time),
            str(r.result.row_count) if done else "",
            str(r.result.size_bytes) if done else "",
            _labels_text(r.labels),
        )
    out.print(table)


@app.command()
@handles_errors
def cancel(
    report_id: str,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Request cancellation (a running report stops at its next stage)."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        report = client.cancel(report_id)
    if as_json:
        _print_json(to_json(report))
    else:
        print(
            f"{report.report_id} {state_name(report.state)}"
            + (" (cancel requested)" if report.cancel_requested else "")
        )


@app.command()
@handles_errors
def delete(
    report_id: str,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Succeed if it does not exist.")
    ] = False,
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Delete a report and its result."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        reply = client.delete(report_id, allow_missing=allow_missing)
    if as_json:
        _print_json(to_json(reply))
    else:
        print(f"deleted {reply.report_id or report_id}")


@app.command()
@handles_errors
def download(
    report_id: str,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="Write here; '-' writes to stdout.")
    ],
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 600.0,
    as_json: JsonOpt = False,
    no_uri: Annotated[
        bool,
        typer.Option(
            "--no-uri", help="Stream through the edge even when S3 offers a presigned URL."
        ),
    ] = False,
) -> None:
    """Download a SUCCEEDED report's result (checked against its SHA-256): a large result
    straight from S3 by its presigned URL, falling back to the edge's stream."""
    use_uri = not no_uri
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        if str(out_path) == "-":
            meta = client.download(report_id, sys.stdout.buffer, timeout=timeout, use_uri=use_uri)
            sys.stdout.flush()
        else:
            meta = client.download(report_id, out_path, timeout=timeout, use_uri=use_uri)
    if as_json:
        if str(out_path) != "-":
            _print_json({**to_json(meta), "path": str(out_path)})
    elif str(out_path) != "-":
        err.print(f"wrote {meta.size_bytes} bytes ({meta.row_count} rows) to {out_path}")


def describe_params(schema: Mapping[str, Any]) -> list[tuple[str, str, bool, str]]:
    """(name, type, required, description) of each top-level parameter of a kind."""
    required = set(schema.get("required", []))
    rows = []
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type") or ("enum" if "enum" in spec else "any")
        if kind == "array" and isinstance(spec.get("items"), dict):
            kind = f"array of {spec['items'].get('type', 'any')}"
        notes = [spec.get("description", "")]
        if "default" in spec:
            notes.append(f"default {json.dumps(spec['default'])}")
        if "minimum" in spec or "maximum" in spec:
            notes.append(f"{spec.get('minimum', '')}..{spec.get('maximum', '')}")
        rows.append((name, str(kind), name in required, "; ".join(n for n in notes if n)))
    return rows


@app.command()
@handles_errors
def kinds(
    endpoint: EndpointOpt = DEFAULT_ENDPOINT,
    api_key: ApiKeyOpt = None,
    tls: TlsOpt = False,
    root_certs: RootCertsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """List the report kinds and the parameters each takes."""
    with _client(endpoint, api_key, tls, root_certs, timeout) as client:
        found = client.kinds()
    if as_json:
        _print_json(
            [{**to_json(k), "params_schema": json.loads(k.params_schema or "{}")} for k in found]
        )
        return
    for k in found:
        cost = pb.CostClass.Name(k.cost_class).removeprefix("COST_CLASS_")
        formats = ", ".join(
            pb.OutputFormat.Name(f).removeprefix("OUTPUT_FORMAT_").lower() for f in k.output_formats
        )
        out.print(f"[bold]{k.name}[/] v{k.version} ({cost}; output {formats})")
        out.print(f"  {k.description}", markup=False)
        table = Table("PARAM", "TYPE", "REQUIRED", "NOTES", box=None, padding=(0, 2))
        for name, type_, needed, notes in describe_params(json.loads(k.params_schema or "{}")):
            table.add_row(name, type_, "yes" if needed else "", notes)
        out.print(table)


# `reportgrid schedule ...`: reportgrid/cli/schedules.py adds itself to `app`. Imported
# last, since it is built on this module's options and helpers.
import reportgrid.cli.schedules  # noqa: E402, F401
