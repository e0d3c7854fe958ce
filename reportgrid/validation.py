"""Validation of a SubmitReportRequest, shared by the edge (before it acknowledges) and the
workers (before they run: the task may come from an older or newer edge).

Every problem is collected and reported at once, each as a field violation named by its
proto path, so a client fixes its request in one round trip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.json_format import MessageToDict

from reportgrid import resources
from reportgrid.engine.registry import KindSpec, Registry
from reportgrid.errors import FieldViolation, InvalidArgument
from reportgrid.ids import validate_idempotency_key
from reportgrid.v1 import reports_pb2 as pb

DEFAULT_TTL_SECONDS: Final = 7 * 24 * 3600
MIN_TTL_SECONDS: Final = 60
MAX_TTL_SECONDS: Final = 90 * 24 * 3600
# Enum values, computed once: protobuf builds a new list on every .values() call.
_OUTPUTFORMAT_VALUES: Final = frozenset(pb.OutputFormat.values())
_PRIORITY_VALUES: Final = frozenset(pb.Priority.values())
_DURABILITY_VALUES: Final = frozenset(pb.Durability.values())
_DATAFORMAT_VALUES: Final = frozenset(pb.DataFormat.values())
# s3://bucket/key with a bucket name as S3 allows it and a non-empty key.
_S3_URI: Final = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")


@dataclass(frozen=True, slots=True)
class ValidSubmit:
    """What validation learned, so no caller parses the request twice."""

    kind: KindSpec
    params: dict[str, Any]
    output_format: pb.OutputFormat.ValueType
    ttl_seconds: int


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = _S3_URI.fullmatch(uri)
    if match is None:
        raise ValueError("must be s3://<bucket>/<key>")
    return match["bucket"], match["key"]


def validate_submit(request: pb.SubmitReportRequest, registry: Registry) -> ValidSubmit:
    violations: list[FieldViolation] = []
    try:
        kind = registry.get(request.kind)
    except InvalidArgument as err:
        raise InvalidArgument(err.violations) from None

    try:
        params = MessageToDict(request.params) if request.HasField("params") else {}
    except ValueError:  # NaN or Infinity: a Struct may hold them, JSON cannot
        raise InvalidArgument.field("params", "holds NaN or Infinity; use finite numbers") from None
    try:
        kind.validate_params(params)
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

    violations += _input_violations(request, kind)

    if request.priority not in _PRIORITY_VALUES:
        violations.append(FieldViolation("priority", f"{request.priority} is not a priority"))
    if request.durability not in _DURABILITY_VALUES:
        violations.append(FieldViolation("durability", f"{request.durability} is not a durability"))

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

    if request.idempotency_key:
        try:
            validate_idempotency_key(request.idempotency_key)
        except InvalidArgument as err:
            violations += err.violations

    if violations:
        raise InvalidArgument(violations)
    return ValidSubmit(kind, params, output_format, ttl_seconds)


def _input_violations(request: pb.SubmitReportRequest, kind: KindSpec) -> list[FieldViolation]:
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
    else:
        if not kind.accepts_s3_input:
            found.append(
                FieldViolation("input.s3_uri", f"kind {kind.name!r} reads inline data only")
            )
        try:
            parse_s3_uri(request.input.s3_uri)
        except ValueError as err:
            found.append(FieldViolation("input.s3_uri", str(err)))
    return found
