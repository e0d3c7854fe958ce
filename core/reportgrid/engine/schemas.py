"""JSON Schema fragments shared by the tabular kinds (summary, timeseries), and the
cross-field checks a schema cannot express.

Schemas are strict (no unknown properties, bounded sizes) so the edge rejects a bad request
with the exact path of each bad field. Column names are free text here: whether a column
exists is only known once the input is read, and then the engine names the missing one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from reportgrid.errors import FieldViolation
from reportgrid.limits import (
    MAX_AGGREGATES,
    MAX_COLUMN_NAME_CHARS,
    MAX_FILTER_TEXT_CHARS,
    MAX_FILTERS,
    MAX_GROUP_BY,
    MAX_IN_VALUES,
    MAX_TOP_N,
)

# The named percentile ops and the percent each stands for.
NAMED_PERCENTILES: Final = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
NUMERIC_OPS: Final = frozenset({"sum", "avg", "percentile", *NAMED_PERCENTILES})
AGGREGATE_OPS: Final = (
    "count",
    "count_distinct",
    "sum",
    "avg",
    "min",
    "max",
    "percentile",
    *NAMED_PERCENTILES,
)
FILTER_OPS: Final = ("=", "!=", "<", "<=", ">", ">=", "in", "contains")

COLUMN: Final[dict[str, Any]] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_COLUMN_NAME_CHARS,
    "description": "A column of the input, by its exact name.",
}
ALIAS: Final[dict[str, Any]] = {
    "type": "string",
    "maxLength": 64,
    "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$",
    "description": "The output column name (letters, digits, underscore).",
}
# A list of types, not anyOf: each keyword applies only to its own type (maxLength to
# strings, maxItems to arrays), and jsonschema checks one list of types far faster than
# it tries each branch of an anyOf (and reports one short error, not one per branch).
_SCALAR_TYPES: Final = ["string", "number", "boolean"]
_SCALAR: Final[dict[str, Any]] = {"type": _SCALAR_TYPES, "maxLength": MAX_FILTER_TEXT_CHARS}

AGGREGATE: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["op"],
    "properties": {
        "op": {"enum": list(AGGREGATE_OPS)},
        "column": COLUMN,
        "value": {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 100,
            "description": "For op 'percentile': the percent, e.g. 97.5.",
        },
        "as": ALIAS,
    },
    "allOf": [
        {
            # Every op but count reads a column (count without one counts rows).
            "if": {"properties": {"op": {"not": {"const": "count"}}}},
            "then": {"required": ["column"]},
        },
        {
            "if": {"properties": {"op": {"const": "percentile"}}, "required": ["op"]},
            "then": {"required": ["value"]},
        },
    ],
}

FILTER: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["column", "op", "value"],
    "properties": {
        "column": COLUMN,
        "op": {"enum": list(FILTER_OPS)},
        "value": {
            "type": [*_SCALAR_TYPES, "array"],
            "maxLength": MAX_FILTER_TEXT_CHARS,
            "minItems": 1,
            "maxItems": MAX_IN_VALUES,
            "items": _SCALAR,
        },
    },
    "allOf": [
        {
            "if": {"properties": {"op": {"const": "in"}}, "required": ["op"]},
            "then": {"properties": {"value": {"type": "array"}}},
            "else": {"properties": {"value": {"not": {"type": "array"}}}},
        },
        {
            "if": {"properties": {"op": {"const": "contains"}}, "required": ["op"]},
            "then": {"properties": {"value": {"type": "string"}}},
        },
    ],
}

SORT_KEY: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["column"],
    "properties": {
        "column": {**COLUMN, "description": "An output column: a group-by column or an alias."},
        "descending": {"type": "boolean", "default": False},
    },
}


def tabular_properties() -> dict[str, Any]:
    """The properties summary and timeseries share."""
    return {
        "group_by": {
            "type": "array",
            "maxItems": MAX_GROUP_BY,
            "uniqueItems": True,
            "items": COLUMN,
        },
        "aggregates": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_AGGREGATES,
            "items": AGGREGATE,
        },
        "filters": {"type": "array", "maxItems": MAX_FILTERS, "items": FILTER},
        "sort": {"type": "array", "maxItems": MAX_GROUP_BY + MAX_AGGREGATES, "items": SORT_KEY},
        "top_n": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_N},
    }


def aggregate_alias(aggregate: Mapping[str, Any]) -> str:
    """The output column of an aggregate: its `as`, or `<op>_<column>` ("count" alone)."""
    if "as" in aggregate:
        return str(aggregate["as"])
    op = str(aggregate["op"])
    if op == "percentile":
        op = "p" + format(float(aggregate["value"]), "g").replace(".", "_")
    column = aggregate.get("column")
    return op if column is None else f"{op}_{column}"


def output_column_checks(
    params: Mapping[str, Any], leading: Iterable[str] = ()
) -> list[FieldViolation]:
    """Output names must be unique, sort keys must name an output column, and only
    'percentile' takes a value.
    `leading` are columns the kind puts first (timeseries: "bucket")."""
    violations: list[FieldViolation] = [
        # Only 'percentile' takes a value (p50..p99 name theirs); the schema cannot say
        # this with a readable message.
        FieldViolation(
            f"params.aggregates[{i}].value",
            f"only op 'percentile' takes a value; {aggregate['op']!r} names its own",
        )
        for i, aggregate in enumerate(params.get("aggregates", []))
        if "value" in aggregate and aggregate["op"] != "percentile"
    ]
    outputs: dict[str, str] = dict.fromkeys(leading, "the kind")
    for i, column in enumerate(params.get("group_by", [])):
        where = f"params.group_by[{i}]"
        if column in outputs:
            violations.append(FieldViolation(where, f"{column!r} is already an output column"))
        outputs[column] = where
    for i, aggregate in enumerate(params.get("aggregates", [])):
        alias = aggregate_alias(aggregate)
        if alias in outputs:
            violations.append(
                FieldViolation(
                    f"params.aggregates[{i}]",
                    f"output column {alias!r} is already produced by {outputs[alias]}; "
                    "give this aggregate a different 'as'",
                )
            )
        outputs[alias] = f"params.aggregates[{i}]"
    for i, key in enumerate(params.get("sort", [])):
        if key["column"] not in outputs:
            known = ", ".join(sorted(outputs))
            violations.append(
                FieldViolation(
                    f"params.sort[{i}].column",
                    f"{key['column']!r} is not an output column; sort by one of: {known}",
                )
            )
    return violations
