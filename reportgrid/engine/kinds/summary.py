"""`summary`: group-by dimensions and aggregates over tabular input, with filters, sort
and top-N. Runs light on inline input and heavy on S3 input (KindSpec.cost_for)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reportgrid.engine import schemas
from reportgrid.engine.registry import CostClass, KindSpec
from reportgrid.engine.request import GenerateRequest, GenerateResult
from reportgrid.errors import FieldViolation
from reportgrid.v1 import reports_pb2 as pb

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
    output_formats=frozenset(
        {
            pb.OUTPUT_FORMAT_CSV,
            pb.OUTPUT_FORMAT_JSON,
            pb.OUTPUT_FORMAT_PARQUET,
            pb.OUTPUT_FORMAT_MARKDOWN,
        }
    ),
    input_formats=frozenset({pb.DATA_FORMAT_CSV, pb.DATA_FORMAT_JSON, pb.DATA_FORMAT_PARQUET}),
    generator=generate,
    accepts_s3_input=True,
    extra_checks=_checks,
)
