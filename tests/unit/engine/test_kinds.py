"""The built-in kinds' schemas and the engine's pure pieces."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from reportgrid.engine.kinds import REGISTRY
from reportgrid.engine.output import markdown_table
from reportgrid.engine.registry import CostClass
from reportgrid.engine.schemas import aggregate_alias
from reportgrid.engine.sql import quote
from reportgrid.errors import InvalidArgument
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import DEFAULT_TTL_SECONDS, InputPolicy, validate_submit


def test_registry_lists_the_built_in_kinds() -> None:
    assert [k.name for k in REGISTRY] == ["summary", "synthetic", "synthetic_heavy", "timeseries"]
    summary = REGISTRY.get("summary")
    assert summary.cost_for("inline_data") is CostClass.LIGHT
    assert summary.cost_for("s3_uri") is CostClass.HEAVY
    assert REGISTRY.get("synthetic_heavy").cost is CostClass.HEAVY
    assert len(REGISTRY.to_proto().kinds) == 4
    for kind in REGISTRY:
        assert kind.output_formats == {
            pb.OUTPUT_FORMAT_CSV,
            pb.OUTPUT_FORMAT_JSON,
            pb.OUTPUT_FORMAT_PARQUET,
            pb.OUTPUT_FORMAT_MARKDOWN,
        }


def test_importing_the_kinds_does_not_load_duckdb() -> None:
    code = "import sys, reportgrid.engine.kinds; sys.exit('duckdb' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("summary", {}, "params"),
        ("summary", {"aggregates": [{"op": "sum"}]}, "params.aggregates[0]"),
        ("summary", {"aggregates": [{"op": "median", "column": "x"}]}, "params.aggregates[0].op"),
        ("summary", {"aggregates": [{"op": "percentile", "column": "x"}]}, "params.aggregates[0]"),
        (
            "summary",
            {"aggregates": [{"op": "p90", "column": "x", "value": 5}]},
            "params.aggregates[0].value",
        ),
        ("summary", {"aggregates": [{"op": "count"}], "top_n": 0}, "params.top_n"),
        ("summary", {"aggregates": [{"op": "count"}], "extra": 1}, "params"),
        (
            "summary",
            {"aggregates": [{"op": "count"}], "filters": [{"column": "a", "op": "in", "value": 1}]},
            "params.filters[0].value",
        ),
        (
            "summary",
            {
                "aggregates": [{"op": "count"}],
                "filters": [{"column": "a", "op": "like", "value": 1}],
            },
            "params.filters[0].op",
        ),
        (
            "summary",
            {"aggregates": [{"op": "count"}], "sort": [{"column": "nope"}]},
            "params.sort[0].column",
        ),
        ("summary", {"aggregates": [{"op": "count"}, {"op": "count"}]}, "params.aggregates[1]"),
        ("summary", {"aggregates": [{"op": "count", "as": "1bad"}]}, "params.aggregates[0].as"),
        (
            "timeseries",
            {"timestamp_column": "t", "interval": "month", "aggregates": [{"op": "count"}]},
            "params.interval",
        ),
        (
            "timeseries",
            {
                "timestamp_column": "t",
                "interval": "day",
                "aggregates": [{"op": "count", "as": "bucket"}],
            },
            "params.aggregates[0]",
        ),
        ("synthetic", {"cpu_ms": -1}, "params.cpu_ms"),
        ("synthetic", {"output_rows": 1, "output_bytes": 10**6}, "params.output_bytes"),
        ("synthetic_heavy", {"seed": "x"}, "params.seed"),
    ],
)
def test_bad_params_name_their_field(kind: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        REGISTRY.get(kind).validate_params(params)
    assert field in [v.field for v in err.value.violations]


_SUMMARY = {
    "group_by": ["region"],
    "aggregates": [{"op": "percentile", "column": "x", "value": 97.5}, {"op": "count"}],
    "filters": [{"column": "region", "op": "in", "value": ["eu", "us"]}],
    "sort": [{"column": "p97_5_x", "descending": True}],
    "top_n": 10,
}
_SYNTHETIC = {"cpu_ms": 100, "output_rows": 10, "output_bytes": 100}


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("summary", _SUMMARY, _SUMMARY),
        # The schema's defaults are filled in for what the request left out.
        ("synthetic", _SYNTHETIC, {**_SYNTHETIC, "seed": 0}),
        ("synthetic", {}, {"cpu_ms": 0, "output_rows": 100, "output_bytes": 0, "seed": 0}),
    ],
    ids=["summary", "synthetic", "synthetic-defaults"],
)
def test_good_params_pass(kind: str, params: dict[str, Any], expected: dict[str, Any]) -> None:
    # Given a request as a client sends it (params in a Struct, no format or ttl)
    request = pb.SubmitReportRequest(kind=kind)
    request.params.update(params)
    if REGISTRY.get(kind).reads_input:
        request.input.format = pb.DATA_FORMAT_CSV
        request.input.inline_data = b"region,x\neu,1\n"
    # When it is validated on the edge's fast path (slow validation would raise)
    valid = validate_submit(
        request, REGISTRY, tenant="acme", inputs=InputPolicy.of([]), defer_slow=True
    )
    # Then the run gets the params as sent with the defaults filled in (Struct numbers are
    # floats: 10.0 == 10)
    assert valid.kind is REGISTRY.get(kind)
    assert valid.params == expected
    assert valid.output_format == pb.OUTPUT_FORMAT_CSV
    assert valid.ttl_seconds == DEFAULT_TTL_SECONDS


def test_aliases_and_quoting() -> None:
    assert aggregate_alias({"op": "count"}) == "count"
    assert aggregate_alias({"op": "sum", "column": "amount"}) == "sum_amount"
    assert aggregate_alias({"op": "percentile", "column": "a", "value": 97.5}) == "p97_5_a"
    assert quote('a"b') == '"a""b"'


def test_markdown_escapes_cells() -> None:
    table = markdown_table(["name", "n"], [("a|b", 1), (None, 2.5)])
    assert table.splitlines() == ["| name | n |", "| --- | ---: |", "| a\\|b | 1 |", "|  | 2.5 |"]
