"""Validation of a SubmitReportRequest, shared by the edge (before it acknowledges) and the
workers (before they run: the task may come from an older or newer edge).

Every problem is collected and reported at once, each as a field violation named by its
proto path, so a client fixes its request in one round trip.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.json_format import MessageToDict

from reportgrid import limits, resources, webhook_policy
from reportgrid.engine.registry import KindSpec, Registry, SlowValidation
from reportgrid.errors import FieldViolation, InvalidArgument
from reportgrid.ids import validate_idempotency_key
from reportgrid.v1 import reports_pb2 as pb

DEFAULT_TTL_SECONDS: Final = 7 * 24 * 3600
MIN_TTL_SECONDS: Final = 60
MAX_TTL_SECONDS: Final = 90 * 24 * 3600
# Enum values, computed once: protobuf builds a new list on every .values() call.
_OUTPUTFORMAT_VALUES: Final = frozenset(pb.OutputFormat.values())
_DURABILITY_VALUES: Final = frozenset(pb.Durability.values())
_DATAFORMAT_VALUES: Final = frozenset(pb.DataFormat.values())
# s3://bucket/key with a bucket name as S3 allows it and a non-empty key.
_S3_URI: Final = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")
# One segment of an input key below the tenant's prefix: S3's "safe characters" (plus "="
# for hive-style partitions), so a key means the same to S3, IAM and a reader.
_KEY_SEGMENT: Final = re.compile(r"^[A-Za-z0-9!_.*'()=-]+$")
# Label keys and values (limits.MAX_LABEL_*): GCP's label rules, lowercase only. ASCII
# classes, so no Unicode letter or digit slips through.
_LABEL_KEY: Final = re.compile(rf"[a-z][a-z0-9_-]{{0,{limits.MAX_LABEL_KEY_CHARS - 1}}}", re.ASCII)
_LABEL_VALUE: Final = re.compile(rf"[a-z0-9_-]{{0,{limits.MAX_LABEL_VALUE_CHARS}}}", re.ASCII)
# A bad key is quoted in its field path cut to this many characters.
_QUOTED_LABEL_KEY_CHARS: Final = limits.MAX_LABEL_KEY_CHARS + 1
# The delimiters DuckDB's CSV sniffer tries (read_csv auto_detect): a header's columns are
# counted with the one that splits it most, as the sniffer would pick.
_CSV_DELIMITERS: Final = (",", "|", ";", "\t")
# Inline JSON larger than this is validated off the edge's event loop (about 3 ms to parse).
_JSON_ON_LOOP_BYTES: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class InputPolicy:
    """Where report inputs may come from: the configured input buckets
    (ENV.INPUT_BUCKETS), each tenant only under resources.tenant_input_prefix(tenant).
    Never the results bucket or any other bucket (docs/SECURITY.md, "Tenant boundary").
    Also where a request's webhook may point (reportgrid/webhook_policy.py): loopback only
    in the local region (ENV.WEBHOOK_ALLOW_LOOPBACK)."""

    buckets: frozenset[str]
    loopback_webhooks: bool = False

    @classmethod
    def of(cls, buckets: Iterable[str], *, loopback_webhooks: bool = False) -> InputPolicy:
        return cls(frozenset(buckets), loopback_webhooks)


class InputForbidden(ValueError):
    """The URI is outside the tenant's inputs. One message for every such URI (another
    bucket, the results bucket, another tenant's prefix, a bad key), so that the answer
    never depends on whether the object exists."""


@dataclass(frozen=True, slots=True)
class ValidSubmit:
    """What validation learned, so no caller parses the request twice."""

    kind: KindSpec
    params: dict[str, Any]
    output_format: pb.OutputFormat.ValueType
    ttl_seconds: int


def tenant_input_location(uri: str, *, tenant: str, inputs: InputPolicy) -> tuple[str, str]:
    """(bucket, key) of an input `tenant` may read, or InputForbidden. The edge checks it at
    submit and the worker again before it fetches (the task may not come from an edge)."""
    prefix = resources.tenant_input_prefix(tenant)
    if not inputs.buckets:
        raise InputForbidden(
            "this deployment reads no input from S3 (no input buckets are configured); "
            "send input.inline_data"
        )
    where = " or ".join(f"s3://{bucket}/{prefix}" for bucket in sorted(inputs.buckets))
    forbidden = InputForbidden(
        f"must name an object under {where}: your own prefix of an input bucket, key "
        f"segments of letters, digits and !_.*'()=- only, at most {limits.MAX_S3_KEY_BYTES} "
        "bytes"
    )
    match = _S3_URI.fullmatch(uri)
    if match is None or match["bucket"] not in inputs.buckets:
        raise forbidden
    key = match["key"]
    if not key.startswith(prefix) or len(key.encode()) > limits.MAX_S3_KEY_BYTES:
        raise forbidden
    segments = key[len(prefix) :].split("/")
    # No empty or dot segments: "a//b" and "a/../b" are distinct S3 keys, but readers
    # (and people) may take them for others.
    if any(seg in ("", ".", "..") or not _KEY_SEGMENT.fullmatch(seg) for seg in segments):
        raise forbidden
    return match["bucket"], key


async def validate_submit_on_loop(
    request: pb.SubmitReportRequest, registry: Registry, *, tenant: str, inputs: InputPolicy
) -> ValidSubmit:
    """validate_submit for an event loop: the fast path runs inline; when a request is bad
    and naming each bad field needs the slow validator, that runs in a thread, so one
    request never stalls the loop (its work is bounded anyway: KindSpec.bounds)."""
    if _large_inline_json(request):
        return await asyncio.to_thread(
            validate_submit, request, registry, tenant=tenant, inputs=inputs
        )
    try:
        return validate_submit(request, registry, tenant=tenant, inputs=inputs, defer_slow=True)
    except SlowValidation:
        return await asyncio.to_thread(
            validate_submit, request, registry, tenant=tenant, inputs=inputs
        )


def _large_inline_json(request: pb.SubmitReportRequest) -> bool:
    """Inline JSON is parsed to count its columns: tens of ms for 256 KiB of tiny records,
    too long for the event loop (CSV needs only its header)."""
    return (
        request.HasField("input")
        and request.input.format == pb.DATA_FORMAT_JSON
        and len(request.input.inline_data) > _JSON_ON_LOOP_BYTES
    )


def validate_submit(
    request: pb.SubmitReportRequest,
    registry: Registry,
    *,
    tenant: str,
    inputs: InputPolicy,
    defer_slow: bool = False,
) -> ValidSubmit:
    """The request as `tenant` sent it, or InvalidArgument naming every bad field.
    `defer_slow`: see KindSpec.validate_params."""
    violations: list[FieldViolation] = []
    try:
        kind = registry.get(request.kind)
    except InvalidArgument as err:
        raise InvalidArgument(err.violations) from None

    # Before anything reads the parameters: a huge document is refused in bounded work.
    kind.check_params_size(request.params)
    check_params_bytes(request)
    try:
        params = MessageToDict(request.params) if request.HasField("params") else {}
    except ValueError:  # NaN or Infinity: a Struct may hold them, JSON cannot
        raise InvalidArgument.field("params", "holds NaN or Infinity; use finite numbers") from None
    try:
        kind.validate_params(params, defer_slow=defer_slow)
    except InvalidArgument as err:
        violations += err.violations

    output_format = request.output_format or pb.OUTPUT_FORMAT_CSV
    if output_format not in _OUTPUTFORMAT_VALUES:
        violations.append(FieldViolation("output_format", f"{output_format} is not a format"))
    elif output_format not in kind.output_formats:
        supported = ", ".join(pb.OutputFormat.Name(f) for f in sorted(kind.output_formats))
        violations.append(
            FieldViolation(
                "output_format",
                f"kind {kind.name!r} cannot write "
                f"{pb.OutputFormat.Name(output_format)}; it writes {supported}",
            )
        )

    violations += _input_violations(request, kind, tenant=tenant, inputs=inputs)

    if request.durability not in _DURABILITY_VALUES:
        violations.append(FieldViolation("durability", f"{request.durability} is not a durability"))

    violations += _notify_violations(request, inputs)

    ttl_seconds = DEFAULT_TTL_SECONDS
    if request.HasField("ttl"):
        ttl_seconds = request.ttl.seconds
        if request.ttl.nanos or not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
            violations.append(
                FieldViolation(
                    "ttl",
                    f"must be whole seconds from {MIN_TTL_SECONDS} s to "
                    f"{MAX_TTL_SECONDS // 86400} days",
                )
            )

    violations += label_violations(request.labels)

    if request.idempotency_key:
        try:
            validate_idempotency_key(request.idempotency_key)
        except InvalidArgument as err:
            violations += err.violations

    if violations:
        raise InvalidArgument(violations)
    return ValidSubmit(kind, params, output_format, ttl_seconds)


def check_params_bytes(request: pb.SubmitReportRequest) -> None:
    """InvalidArgument when the params are larger than a report item keeps
    (limits.MAX_PARAMS_BYTES); ByteSize is C-speed and bounded by the message size."""
    size = request.params.ByteSize() if request.HasField("params") else 0
    if size > limits.MAX_PARAMS_BYTES:
        raise InvalidArgument.field(
            "params", f"is {size} bytes serialized; at most {limits.MAX_PARAMS_BYTES}"
        )


def label_violations(labels: Mapping[str, str], field: str = "labels") -> list[FieldViolation]:
    """The violations of a labels map (a submit's labels, or a ListReports label filter):
    too many, then one per bad entry, named `labels[<key>]`."""
    if len(labels) > limits.MAX_LABELS:
        # Said alone: which of thousands of entries is also malformed does not matter.
        return [FieldViolation(field, f"has {len(labels)} labels; at most {limits.MAX_LABELS}")]
    found: list[FieldViolation] = []
    for key in sorted(labels):
        value = labels[key]
        where = f"{field}[{key[:_QUOTED_LABEL_KEY_CHARS]}]"
        if not _LABEL_KEY.fullmatch(key):
            found.append(
                FieldViolation(
                    where,
                    f"is not a label key: 1 to {limits.MAX_LABEL_KEY_CHARS} characters of "
                    "a-z, 0-9, _ and -, starting with a letter",
                )
            )
        elif not _LABEL_VALUE.fullmatch(value):
            found.append(
                FieldViolation(
                    where,
                    f"is not a label value: 0 to {limits.MAX_LABEL_VALUE_CHARS} characters "
                    "of a-z, 0-9, _ and -",
                )
            )
    return found


def _notify_violations(
    request: pb.SubmitReportRequest, inputs: InputPolicy
) -> list[FieldViolation]:
    if not request.HasField("notify"):
        return []
    problem = webhook_policy.url_problem(
        request.notify.url, allow_loopback=inputs.loopback_webhooks
    )
    return [] if problem is None else [FieldViolation("notify.url", problem)]


def _input_violations(
    request: pb.SubmitReportRequest, kind: KindSpec, *, tenant: str, inputs: InputPolicy
) -> list[FieldViolation]:
    source = request.input.WhichOneof("source") if request.HasField("input") else None
    if not kind.reads_input:
        return (
            [FieldViolation("input", f"kind {kind.name!r} reads no input; leave it unset")]
            if source
            else []
        )
    if source is None:
        return [FieldViolation("input", f"kind {kind.name!r} needs input: inline_data or s3_uri")]
    found: list[FieldViolation] = []
    fmt = request.input.format
    if fmt == pb.DATA_FORMAT_UNSPECIFIED or fmt not in _DATAFORMAT_VALUES:
        found.append(FieldViolation("input.format", "is required: CSV, JSON or PARQUET"))
    elif fmt not in kind.input_formats:
        supported = ", ".join(pb.DataFormat.Name(f) for f in sorted(kind.input_formats))
        found.append(
            FieldViolation(
                "input.format",
                f"kind {kind.name!r} reads {supported}, not {pb.DataFormat.Name(fmt)}",
            )
        )
    if source == "inline_data":
        size = len(request.input.inline_data)
        if size == 0:
            found.append(FieldViolation("input.inline_data", "is empty"))
        if size > resources.MAX_INLINE_INPUT_BYTES:
            found.append(
                FieldViolation(
                    "input.inline_data",
                    f"is {size} bytes; inline input is at most {resources.MAX_INLINE_INPUT_BYTES} "
                    "bytes, upload larger data to S3 and pass input.s3_uri",
                )
            )
        if fmt == pb.DATA_FORMAT_PARQUET:
            found.append(FieldViolation("input.format", "PARQUET input must come by s3_uri"))
        elif size and not found:
            found += inline_shape_violations(request.input.inline_data, fmt)
    else:
        if not kind.accepts_s3_input:
            found.append(
                FieldViolation("input.s3_uri", f"kind {kind.name!r} reads inline data only")
            )
        try:
            tenant_input_location(request.input.s3_uri, tenant=tenant, inputs=inputs)
        except InputForbidden as err:
            found.append(FieldViolation("input.s3_uri", str(err)))
    return found


def inline_shape_violations(data: bytes, fmt: pb.DataFormat.ValueType) -> list[FieldViolation]:
    """Columns and rows of inline input, from its header (CSV) or keys (JSON), against
    reportgrid/limits.py: DuckDB's cost grows with the columns far faster than with bytes.
    Input the checks cannot read is left to the engine, which names what is wrong."""
    field = "input.inline_data"
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if fmt == pb.DATA_FORMAT_CSV:
        columns, rows = _csv_shape(text)
    else:
        shape = _json_shape(text)
        if shape is None:
            return []
        columns, rows = shape
    found: list[FieldViolation] = []
    if rows > limits.MAX_INLINE_ROWS:
        found.append(
            FieldViolation(
                field,
                f"has {rows} rows or more; inline input has at most {limits.MAX_INLINE_ROWS}, "
                "upload larger data to S3 and pass input.s3_uri",
            )
        )
    if len(columns) > limits.MAX_INLINE_COLUMNS:
        # Said alone: what else is wrong with so many names does not matter.
        found.append(
            FieldViolation(
                field,
                f"has {len(columns)} columns; inline input has at most {limits.MAX_INLINE_COLUMNS}",
            )
        )
        return found
    empty = [i for i, name in enumerate(columns) if not name.strip()]
    if empty:
        found.append(
            FieldViolation(
                field, f"has {len(empty)} empty column names (the first is column {empty[0]})"
            )
        )
    long = [i for i, name in enumerate(columns) if len(name) > limits.MAX_COLUMN_NAME_CHARS]
    if long:
        found.append(
            FieldViolation(
                field,
                f"has {len(long)} column names over {limits.MAX_COLUMN_NAME_CHARS} characters "
                f"(the first is column {long[0]})",
            )
        )
    return found


def _csv_shape(text: str) -> tuple[list[str], int]:
    """The header's names and an upper bound on the data rows (line breaks)."""
    first_line = text.split("\n", 1)[0]
    delimiter = max(_CSV_DELIMITERS, key=first_line.count)  # ties: the first, ","
    try:
        # The header record only; csv follows a quoted name across line breaks.
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    except csv.Error:  # a field beyond csv's own limit (128 KiB): one name far too long
        header = [first_line]
    return header, text.rstrip("\n").count("\n")


def _json_shape(text: str) -> tuple[list[str], int] | None:
    """The keys of the records (an array of objects or one object a line) and how many."""
    stripped = text.lstrip()
    if not stripped.startswith("["):
        # One object a line: parsed as one array (one C-speed json.loads, not one call
        # per line: 85,000 tiny lines cost 0.13 s the other way, on the edge's loop).
        stripped = "[" + ",".join(line for line in stripped.splitlines() if line.strip()) + "]"
    try:
        records = json.loads(stripped)
    except (ValueError, RecursionError):  # hostile nesting exhausts the parser's stack
        return None
    if not isinstance(records, list):
        return None
    keys: dict[str, Any] = {}  # insertion-ordered union; the values are ignored
    for record in records:
        if isinstance(record, dict):
            keys.update(record)
    return list(keys), len(records)
