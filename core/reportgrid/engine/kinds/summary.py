"""`summary`: group-by dimensions and aggregates over tabular input, with filters, sort
and top-N. Runs light on inline input and heavy on S3 input (KindSpec.cost_for)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reportgrid.engine import schemas
from reportgrid.engine.registry import (
    ALL_OUTPUT_FORMATS,
    TABULAR_INPUT_FORMATS,
    CostClass,
    KindSpec,
)
from reportgrid.engine.request import GenerateRequest, GenerateResult
from reportgrid.errors import FieldViolation

PARAMS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "summary parameters",
    "type": "object",
    "additionalProperties": False,
    "required": ["aggregates"],
    "properties": schemas.tabular_properties(),
}


def generate(request: GenerateRequest) -> GenerateResult:
    from reportgrid.engine import tabular  # noqa: PLC0415 - DuckDB loads only where reports run

    return tabular.run_tabular(request, bucket=None)


def _checks(params: Mapping[str, Any]) -> Iterable[FieldViolation]:
    return schemas.output_column_checks(params)


SPEC = KindSpec(
    name="summary",
    version=1,
    description=(
        "Groups rows by dimensions and computes aggregates (count, sum, avg, min, max, "
        "p50/p90/p95/p99 or any percentile, count_distinct), with filters, sort and top-N. "
        "Input: inline CSV/JSON, or CSV/JSON/Parquet from S3."
    ),
    params_schema=PARAMS_SCHEMA,
    cost=CostClass.LIGHT,
    output_formats=ALL_OUTPUT_FORMATS,
    input_formats=TABULAR_INPUT_FORMATS,
    generator=generate,
    accepts_s3_input=True,
    extra_checks=_checks,
)
