"""The API's messages as plain data: the requests a client's arguments stand for, the names
of the enums, and what a WatchReport message carries. No I/O but reading an input file,
so both clients share it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2

from reportgrid import errors
from reportgrid.v1 import reports_pb2 as pb

_CODES: Final = frozenset(code_pb2.Code.values())
TERMINAL_STATES: Final = frozenset(
    {
        pb.REPORT_STATE_SUCCEEDED,
        pb.REPORT_STATE_FAILED,
        pb.REPORT_STATE_CANCELLED,
        pb.REPORT_STATE_EXPIRED,
    }
)

_FORMATS_BY_SUFFIX: Final = {
    ".csv": pb.DATA_FORMAT_CSV,
    ".json": pb.DATA_FORMAT_JSON,
    ".jsonl": pb.DATA_FORMAT_JSON,
    ".ndjson": pb.DATA_FORMAT_JSON,
    ".parquet": pb.DATA_FORMAT_PARQUET,
}
_DATA_FORMATS: Final = {
    "csv": pb.DATA_FORMAT_CSV,
    "json": pb.DATA_FORMAT_JSON,
    "parquet": pb.DATA_FORMAT_PARQUET,
}
OUTPUT_FORMATS: Final = {
    "csv": pb.OUTPUT_FORMAT_CSV,
    "json": pb.OUTPUT_FORMAT_JSON,
    "parquet": pb.OUTPUT_FORMAT_PARQUET,
    "markdown": pb.OUTPUT_FORMAT_MARKDOWN,
}

VIEWS: Final = {"basic": pb.REPORT_VIEW_BASIC, "full": pb.REPORT_VIEW_FULL}

_T = TypeVar("_T")


def watched_report(response: pb.WatchReportResponse) -> pb.Report | None:
    """The report a WatchReport message carries; None for a heartbeat (or an event this SDK
    does not know yet), which only says the stream is alive."""
    return response.report if response.WhichOneof("event") == "report" else None


def parse_view(view: pb.ReportView.ValueType | str | None) -> pb.ReportView.ValueType:
    """ "basic" | "full" (or the enum) to the ReportView enum; None is BASIC."""
    if view is None:
        return pb.REPORT_VIEW_BASIC
    return _lookup(VIEWS, view, "view") if isinstance(view, str) else view


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    """ "key=value" strings (the CLI's --label) to a labels map; the service checks the
    keys and values themselves."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.InvalidArgument.field("labels", f"{pair!r} is not key=value")
        labels[key] = value
    return labels


def error_info(report: pb.Report) -> error_details_pb2.ErrorInfo | None:
    """The google.rpc.ErrorInfo of a report that did not succeed (its stable `reason`, its
    domain and metadata), or None."""
    if not report.HasField("error"):
        return None
    for detail in report.error.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            return info
    return None


def error_summary(report: pb.Report) -> str:
    """ "INVALID_ARGUMENT MISSING_COLUMN: no column 'x'" for a report with an error; ""
    otherwise."""
    if not report.HasField("error"):
        return ""
    code = code_pb2.Code.Name(report.error.code) if report.error.code in _CODES else "UNKNOWN"
    info = error_info(report)
    reason = f" {info.reason}" if info is not None else ""
    return f"{code}{reason}: {report.error.message}"


def state_name(state: pb.ReportState.ValueType) -> str:
    """ "SUCCEEDED" for REPORT_STATE_SUCCEEDED."""
    return pb.ReportState.Name(state).removeprefix("REPORT_STATE_")


def data_format_for(path: str | os.PathLike[str]) -> pb.DataFormat.ValueType:
    """The input format a file name implies (.csv, .json, .jsonl, .ndjson, .parquet)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS_BY_SUFFIX:
        known = ", ".join(sorted(_FORMATS_BY_SUFFIX))
        raise errors.InvalidArgument.field(
            "input.format", f"cannot tell the format of {str(path)!r}; use one of {known}"
        )
    return _FORMATS_BY_SUFFIX[suffix]


def parse_data_format(name: str) -> pb.DataFormat.ValueType:
    """ "csv" | "json" | "parquet" to the DataFormat enum."""
    try:
        return _DATA_FORMATS[name.lower()]
    except KeyError:
        known = ", ".join(_DATA_FORMATS)
        raise errors.InvalidArgument.field(
            "input.format", f"unknown format {name!r}; use one of {known}"
        ) from None


@dataclass(frozen=True, slots=True)
class ReportInputSpec:
    """Where a report's data comes from: inline bytes or an S3 URI, with its format."""

    format: pb.DataFormat.ValueType
    data: bytes | None = None
    s3_uri: str | None = None

    def to_proto(self) -> pb.ReportInput:
        if self.s3_uri is not None:
            return pb.ReportInput(format=self.format, s3_uri=self.s3_uri)
        return pb.ReportInput(format=self.format, inline_data=self.data or b"")


def build_submit_request(
    kind: str,
    params: Mapping[str, Any] | None = None,
    *,
    input_file: str | os.PathLike[str] | None = None,
    input_data: bytes | None = None,
    input_s3_uri: str | None = None,
    input_format: pb.DataFormat.ValueType | str | None = None,
    output_format: pb.OutputFormat.ValueType | str | None = None,
    idempotency_key: str | None = None,
    ttl: timedelta | float | None = None,
    durability: pb.Durability.ValueType | None = None,
    labels: Mapping[str, str] | None = None,
) -> pb.SubmitReportRequest:
    """The SubmitReportRequest for the arguments of `submit`."""
    sources = [s for s in (input_file, input_data, input_s3_uri) if s is not None]
    if len(sources) > 1:
        raise errors.InvalidArgument.field(
            "input", "give one of input_file, input_data or input_s3_uri"
        )
    request = pb.SubmitReportRequest(
        kind=kind,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
    )
    if params:
        request.params.CopyFrom(_struct(params))
    fmt = parse_data_format(input_format) if isinstance(input_format, str) else input_format
    if input_file is not None:
        data = Path(input_file).read_bytes()
        request.input.CopyFrom(
            ReportInputSpec(fmt or data_format_for(input_file), data=data).to_proto()
        )
    elif input_data is not None or input_s3_uri is not None:
        if fmt is None:
            raise errors.InvalidArgument.field(
                "input.format", "give input_format for inline data or an S3 URI"
            )
        request.input.CopyFrom(
            ReportInputSpec(fmt, data=input_data, s3_uri=input_s3_uri).to_proto()
        )
    if output_format is not None:
        request.output_format = (
            _lookup(OUTPUT_FORMATS, output_format, "output_format")
            if isinstance(output_format, str)
            else output_format
        )
    if ttl is not None:
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(seconds)))
    if durability is not None:
        request.durability = durability
    if labels:
        request.labels.update(labels)
    return request


def build_list_request(
    *,
    page_size: int = 0,
    states: Sequence[pb.ReportState.ValueType] = (),
    kinds: Sequence[str] = (),
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    labels: Mapping[str, str] | None = None,
    view: pb.ReportView.ValueType | str | None = None,
) -> pb.ListReportsRequest:
    """The first ListReportsRequest for the arguments of `list`/`list_pages`."""
    request = pb.ListReportsRequest(
        page_size=page_size, states=states, kinds=kinds, labels=labels, view=parse_view(view)
    )
    if created_after is not None:
        request.created_after.CopyFrom(_timestamp(created_after))
    if created_before is not None:
        request.created_before.CopyFrom(_timestamp(created_before))
    return request


def _lookup(table: Mapping[str, _T], name: str, field: str) -> _T:
    try:
        return table[name.lower()]
    except KeyError:
        known = ", ".join(table)
        raise errors.InvalidArgument.field(field, f"unknown {name!r}; use one of {known}") from None


def _struct(params: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(params))
    return struct


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
