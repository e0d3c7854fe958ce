"""`timeseries`: rolls rows up into hour/day/week buckets of a timestamp column, with the
summary's aggregates, filters and an optional group-by. Output starts with the column
`bucket` (the bucket's start); rows are in bucket order unless `sort` says otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from reportgrid.engine import schemas
from reportgrid.engine.registry import (
    ALL_OUTPUT_FORMATS,
    TABULAR_INPUT_FORMATS,
    CostClass,
    KindSpec,
)
from reportgrid.engine.request import GenerateRequest, GenerateResult
from reportgrid.errors import FieldViolation

BUCKET_COLUMN: Final = "bucket"
INTERVALS: Final = ("hour", "day", "week")

PARAMS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "timeseries parameters",
    "type": "object",
    "additionalProperties": False,
    "required": ["timestamp_column", "interval", "aggregates"],
    "properties": {
        "timestamp_column": {
            **schemas.COLUMN,
            "description": "The column holding each row's time (ISO 8601 text, or a "
            "timestamp/date column).",
        },
        "interval": {
            "enum": list(INTERVALS),
            "description": "Bucket width; weeks start on Monday (ISO weeks), times are UTC.",
        },
        **schemas.tabular_properties(),
    },
}


def generate(request: GenerateRequest) -> GenerateResult:
    from reportgrid.engine import tabular  # noqa: PLC0415 - DuckDB loads only where reports run

    return tabular.run_tabular(
        request,
        bucket=tabular.Bucketing(
            column=str(request.params["timestamp_column"]),
            interval=str(request.params["interval"]),
            output=BUCKET_COLUMN,
        ),
    )


def _checks(params: Mapping[str, Any]) -> Iterable[FieldViolation]:
    return schemas.output_column_checks(params, leading=(BUCKET_COLUMN,))


SPEC = KindSpec(
    name="timeseries",
    version=1,
    description=(
        "Buckets rows by hour, day or week over a timestamp column and computes the "
        "summary aggregates per bucket (and per group-by dimension)."
    ),
    params_schema=PARAMS_SCHEMA,
    cost=CostClass.LIGHT,
    output_formats=ALL_OUTPUT_FORMATS,
    input_formats=TABULAR_INPUT_FORMATS,
    generator=generate,
    accepts_s3_input=True,
    extra_checks=_checks,
)
