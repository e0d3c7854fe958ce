"""`synthetic` and `synthetic_heavy`: load-test kinds whose CPU time and output size are
parameters. They read no input.

Output rows are a pure function of the seed, so a test can recompute them:
  row      0 .. output_rows-1
  value    (row * 7919 + seed) % 10007
  payload  the hex MD5 digests of "<seed>:<row>:0", "<seed>:<row>:1", ... concatenated and
           cut to payload_bytes = output_bytes // output_rows characters (omitted when 0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from reportgrid import limits
from reportgrid.engine.registry import ALL_OUTPUT_FORMATS, CostClass, KindSpec
from reportgrid.engine.request import GenerateRequest, GenerateResult
from reportgrid.errors import FieldViolation

VALUE_MULTIPLIER: Final = 7919
VALUE_MODULUS: Final = 10007


def params_schema(*, max_cpu_ms: int, max_rows: int, max_bytes: int) -> dict[str, Any]:
    """The parameters, bounded for the path the kind runs on (reportgrid/limits.py)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "synthetic parameters",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "cpu_ms": {
                "type": "integer",
                "minimum": 0,
                "maximum": max_cpu_ms,
                "default": 0,
                "description": "CPU time to burn before writing the output (checked for "
                "cancellation as it runs).",
            },
            "output_rows": {
                "type": "integer",
                "minimum": 0,
                "maximum": max_rows,
                "default": 100,
            },
            "output_bytes": {
                "type": "integer",
                "minimum": 0,
                "maximum": max_bytes,
                "default": 0,
                "description": "Total payload characters, spread evenly over the rows (at "
                f"most {limits.MAX_PAYLOAD_BYTES_PER_ROW} per row).",
            },
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
        },
    }


# Light runs in the stream-worker Lambda (120 s, 512 MB of /tmp, shared with other
# tenants' reports in the same batch): seconds and megabytes. Heavy runs on Fargate.
PARAMS_SCHEMA: Final = params_schema(
    max_cpu_ms=limits.MAX_LIGHT_CPU_MS,
    max_rows=limits.MAX_LIGHT_OUTPUT_ROWS,
    max_bytes=limits.MAX_LIGHT_OUTPUT_BYTES,
)
HEAVY_PARAMS_SCHEMA: Final = params_schema(
    max_cpu_ms=limits.MAX_HEAVY_CPU_MS,
    max_rows=limits.MAX_HEAVY_OUTPUT_ROWS,
    max_bytes=limits.MAX_HEAVY_OUTPUT_BYTES,
)


def _checks(params: Mapping[str, Any]) -> list[FieldViolation]:
    rows = int(params.get("output_rows", 100))
    total = int(params.get("output_bytes", 0))
    if total and rows == 0:
        return [FieldViolation("params.output_bytes", "needs output_rows > 0")]
    if rows and total // rows > limits.MAX_PAYLOAD_BYTES_PER_ROW:
        return [
            FieldViolation(
                "params.output_bytes",
                f"is {total // rows} bytes per row; at most {limits.MAX_PAYLOAD_BYTES_PER_ROW} "
                "per row, raise output_rows",
            )
        ]
    return []


def generate(request: GenerateRequest) -> GenerateResult:
    from reportgrid.engine import synthetic_gen  # noqa: PLC0415 - DuckDB loads only where reports run

    return synthetic_gen.generate(request)


SPEC = KindSpec(
    name="synthetic",
    version=1,
    description="Load-test kind: burns cpu_ms of CPU and writes output_rows rows "
    "(output_bytes of payload) derived from seed. Runs on the stream workers.",
    params_schema=PARAMS_SCHEMA,
    cost=CostClass.LIGHT,
    output_formats=ALL_OUTPUT_FORMATS,
    input_formats=frozenset(),
    generator=generate,
    accepts_s3_input=False,
    extra_checks=_checks,
)

HEAVY_SPEC = KindSpec(
    name="synthetic_heavy",
    version=1,
    description="As synthetic, but runs on the queue (Fargate) workers, with larger "
    "bounds on cpu_ms, output_rows and output_bytes.",
    params_schema=HEAVY_PARAMS_SCHEMA,
    cost=CostClass.HEAVY,
    output_formats=ALL_OUTPUT_FORMATS,
    input_formats=frozenset(),
    generator=generate,
    accepts_s3_input=False,
    extra_checks=_checks,
)
