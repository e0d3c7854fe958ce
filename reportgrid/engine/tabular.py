"""The tabular engine behind `summary` and `timeseries`: load the input into DuckDB,
check every referenced column against it, and run one grouped SELECT built from the
params. Identifiers are quoted, values are bound parameters; DuckDB does all the work.

Anything wrong with what the user gave (unreadable input, a missing column, a value that
does not parse) raises ReportFailure naming the column or value: the report ends FAILED.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb

from reportgrid.engine import output, schemas
from reportgrid.engine.request import GenerateRequest, GenerateResult, InputData
from reportgrid.engine.sql import (
    INTEGER_TYPES,
    TEXT_TYPES,
    TIME_TYPES,
    describe,
    first_value_failing,
    is_numeric,
    literal,
    quote,
    require_castable,
)
from reportgrid.errors import ReportFailure
from reportgrid.v1 import reports_pb2 as pb

INPUT_TABLE: Final = "input"
SOURCE_VIEW: Final = "source"
RESULT_TABLE: Final = "result"

_READERS: Final = {
    pb.DATA_FORMAT_CSV: "read_csv({path}, header = true)",
    pb.DATA_FORMAT_JSON: "read_json({path})",
    pb.DATA_FORMAT_PARQUET: "read_parquet({path})",
}
_SQL_OPS: Final = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True, slots=True)
class Bucketing:
    """Timeseries: truncate `column` to `interval` and output it first as `output`."""

    column: str
    interval: str
    output: str


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that cannot load extensions (so no network access) and works
    in UTC."""
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": max(1, min(4, os.cpu_count() or 1)),
        },
    )
    con.execute("SET TimeZone = 'UTC'")
    return con


def load_input(con: duckdb.DuckDBPyConnection, data: InputData) -> dict[str, str]:
    """Read the input into the table `input`; its columns and types."""
    reader = _READERS.get(data.format)
    fmt = pb.DataFormat.Name(data.format).removeprefix("DATA_FORMAT_")
    if reader is None:
        raise ReportFailure("INPUT_UNREADABLE", f"input format {fmt} is not supported")
    try:
        con.execute(
            f"CREATE TABLE {quote(INPUT_TABLE)} AS SELECT * FROM "  # noqa: S608
            + reader.format(path=literal(data.path))
        )
    except duckdb.Error as err:
        raise ReportFailure(
            "INPUT_UNREADABLE", f"the input is not readable as {fmt}: {_summary(err, data.path)}"
        ) from None
    return describe(con, INPUT_TABLE)


def _summary(err: Exception, path: str) -> str:
    """DuckDB's first line, without our temp path or its error-class prefix."""
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if path:
        line = line.replace(path, "input")
    line = re.sub(r"^[A-Za-z ]*Error: ", "", line)
    return line[:300]


@dataclass
class _Query:
    """A SELECT under construction: SQL fragments and their bound parameters in order."""

    select: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)


def run_tabular(request: GenerateRequest, *, bucket: Bucketing | None) -> GenerateResult:
    if request.input is None:
        raise ReportFailure("INVALID_PARAMS", "this kind needs input data")
    params = request.params
    con = connect()
    try:
        columns = load_input(con, request.input)
        request.cancel.check()
        types = _prepare_source(con, columns, params, bucket)
        request.cancel.check()
        sql, values = build_query(con, params, types, bucket)
        _run(con, sql, values)
        request.cancel.check()
        return output.write_result(con, RESULT_TABLE, request.output_format, request.work_dir)
    finally:
        con.close()


def _referenced(params: Mapping[str, Any], bucket: Bucketing | None) -> list[tuple[str, str]]:
    """(column, where) for every input column the params name, in param order."""
    refs: list[tuple[str, str]] = []
    if bucket is not None:
        refs.append((bucket.column, "params.timestamp_column"))
    refs += [(c, f"params.group_by[{i}]") for i, c in enumerate(params.get("group_by", []))]
    for i, agg in enumerate(params.get("aggregates", [])):
        if "column" in agg:
            refs.append((agg["column"], f"params.aggregates[{i}].column"))
    refs += [
        (f["column"], f"params.filters[{i}].column")
        for i, f in enumerate(params.get("filters", []))
    ]
    return refs


def _prepare_source(
    con: duckdb.DuckDBPyConnection,
    columns: Mapping[str, str],
    params: Mapping[str, Any],
    bucket: Bucketing | None,
) -> dict[str, str]:
    """Check the referenced columns exist and convert the ones used as numbers or times;
    create the view `source` and return its column types."""
    missing = [(c, where) for c, where in _referenced(params, bucket) if c not in columns]
    if missing:
        named = "; ".join(f"{c!r} ({where})" for c, where in missing)
        raise ReportFailure(
            "MISSING_COLUMN",
            f"the input has no column {named}; its columns are: {', '.join(map(repr, columns))}",
        )
    conversions: dict[str, tuple[str, str]] = {}  # column -> (SQL expression, new type)
    for i, agg in enumerate(params.get("aggregates", [])):
        column = agg.get("column")
        if agg["op"] in schemas.NUMERIC_OPS and column is not None and column not in conversions:
            conversions[column] = _as_number(
                con, column, columns[column], f"params.aggregates[{i}]"
            )
    if bucket is not None:
        conversions[bucket.column] = _as_timestamp(con, bucket.column, columns[bucket.column])
    selected = [
        f"{conversions[c][0]} AS {quote(c)}" if c in conversions else quote(c) for c in columns
    ]
    con.execute(
        f"CREATE VIEW {quote(SOURCE_VIEW)} AS SELECT {', '.join(selected)} "  # noqa: S608
        f"FROM {quote(INPUT_TABLE)}"
    )
    return {c: conversions[c][1] if c in conversions else t for c, t in columns.items()}


def _as_number(
    con: duckdb.DuckDBPyConnection, column: str, type_name: str, where: str
) -> tuple[str, str]:
    if is_numeric(type_name):
        return quote(column), type_name
    if type_name in TEXT_TYPES:
        bad = first_value_failing(con, INPUT_TABLE, column, "DOUBLE")
        if bad is not None:
            raise ReportFailure(
                "INVALID_VALUE",
                f"column {column!r} ({where}) must hold numbers, but has the value {bad!r}",
            )
        return f"TRY_CAST({quote(column)} AS DOUBLE)", "DOUBLE"
    raise ReportFailure(
        "INVALID_COLUMN_TYPE",
        f"column {column!r} ({where}) has type {type_name}; this aggregate needs numbers",
    )


def _as_timestamp(con: duckdb.DuckDBPyConnection, column: str, type_name: str) -> tuple[str, str]:
    where = "params.timestamp_column"
    if type_name in TIME_TYPES or type_name in TEXT_TYPES:
        if type_name in TEXT_TYPES:
            bad = first_value_failing(con, INPUT_TABLE, column, "TIMESTAMPTZ")
            if bad is not None:
                raise ReportFailure(
                    "INVALID_VALUE",
                    f"column {column!r} ({where}) must hold timestamps (ISO 8601), but has the "
                    f"value {bad!r}",
                )
        # Through TIMESTAMPTZ so an explicit offset is honoured; the session is UTC.
        return f"CAST(CAST({quote(column)} AS TIMESTAMPTZ) AS TIMESTAMP)", "TIMESTAMP"
    raise ReportFailure(
        "INVALID_COLUMN_TYPE",
        f"column {column!r} ({where}) has type {type_name}; it must hold timestamps",
    )


def aggregate_sql(agg: Mapping[str, Any], types: Mapping[str, str]) -> str:
    op = str(agg["op"])
    column = agg.get("column")
    col = quote(column) if column is not None else "*"
    if op == "count":
        return f"count({col})"
    if op == "count_distinct":
        return f"count(DISTINCT {col})"
    if op == "sum":
        # An integer sum is HUGEINT in DuckDB, which not every writer takes; BIGINT is
        # exact, and overflow is reported rather than wrapped.
        integral = types.get(str(column)) in INTEGER_TYPES
        return f"CAST(sum({col}) AS BIGINT)" if integral else f"sum({col})"
    if op in ("avg", "min", "max"):
        return f"{op}({col})"
    percent = float(agg["value"]) if op == "percentile" else schemas.NAMED_PERCENTILES[op]
    # Linear interpolation between the closest ranks; the fraction is our own float.
    return f"quantile_cont({col}, {percent / 100!r})"


def build_query(
    con: duckdb.DuckDBPyConnection,
    params: Mapping[str, Any],
    types: Mapping[str, str],
    bucket: Bucketing | None,
) -> tuple[str, list[Any]]:
    """The report's SELECT over `source` and its bound parameters."""
    query = _Query()
    keys: list[str] = []
    if bucket is not None:
        query.select.append(
            f"date_trunc({literal(bucket.interval)}, {quote(bucket.column)}) AS "
            f"{quote(bucket.output)}"
        )
        keys.append(bucket.output)
        query.where.append(f"{quote(bucket.column)} IS NOT NULL")
    for column in params.get("group_by", []):
        query.select.append(quote(column))
        keys.append(column)
    for agg in params.get("aggregates", []):
        query.select.append(f"{aggregate_sql(agg, types)} AS {quote(schemas.aggregate_alias(agg))}")
    for i, flt in enumerate(params.get("filters", [])):
        _add_filter(con, query, flt, types[flt["column"]], f"params.filters[{i}]")

    sql = f"SELECT {', '.join(query.select)} FROM {quote(SOURCE_VIEW)}"  # noqa: S608
    if query.where:
        sql += " WHERE " + " AND ".join(f"({w})" for w in query.where)
    if keys:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(keys)))
    order = [
        f"{quote(s['column'])} {'DESC' if s.get('descending') else 'ASC'}"
        for s in params.get("sort", [])
    ]
    # The keys break ties, so equal inputs always give the same bytes.
    order += [f"{quote(k)} ASC" for k in keys]
    if order:
        sql += " ORDER BY " + ", ".join(order)
    if "top_n" in params:
        sql += f" LIMIT {int(params['top_n'])}"
    return sql, query.params


def _add_filter(
    con: duckdb.DuckDBPyConnection,
    query: _Query,
    flt: Mapping[str, Any],
    type_name: str,
    where: str,
) -> None:
    column, op, value = str(flt["column"]), str(flt["op"]), flt["value"]
    col = quote(column)
    if op == "contains":
        query.where.append(f"contains(CAST({col} AS VARCHAR), ?)")
        query.params.append(str(value))
        return
    require_castable(column, type_name, f"{where}.column")
    values: Sequence[Any] = value if op == "in" else [value]
    placeholders = []
    for j, item in enumerate(values):
        at = f"{where}.value[{j}]" if op == "in" else f"{where}.value"
        placeholder, bound = _bind(con, item, column, type_name, at)
        placeholders.append(placeholder)
        query.params.append(bound)
    if op == "in":
        query.where.append(f"{col} IN ({', '.join(placeholders)})")
    else:
        query.where.append(f"{col} {_SQL_OPS[op]} {placeholders[0]}")


def _bind(
    con: duckdb.DuckDBPyConnection, value: Any, column: str, type_name: str, where: str
) -> tuple[str, Any]:
    """A placeholder and the value to bind, converted so it compares with the column."""
    # Struct numbers arrive as floats: 5.0 stands for 5.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if is_numeric(type_name):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return "?", value
        if isinstance(value, str):
            try:
                return "?", float(value)
            except ValueError:
                pass
        raise ReportFailure(
            "INVALID_VALUE",
            f"{where}: {value!r} is not a number, but column {column!r} holds numbers",
        )
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if type_name in TEXT_TYPES:
        return "?", text
    row = con.execute(f"SELECT TRY_CAST(? AS {type_name}) IS NOT NULL", [text]).fetchone()
    if not (row and row[0]):
        raise ReportFailure(
            "INVALID_VALUE",
            f"{where}: {text!r} is not a valid {type_name} for column {column!r}",
        )
    return f"CAST(? AS {type_name})", text


def _run(con: duckdb.DuckDBPyConnection, sql: str, values: list[Any]) -> None:
    try:
        con.execute(f"CREATE TABLE {quote(RESULT_TABLE)} AS {sql}", values)
    except duckdb.OutOfRangeException as err:
        raise ReportFailure(
            "VALUE_OUT_OF_RANGE", f"an aggregate overflowed: {_summary(err, '')}"
        ) from None
    except duckdb.ConversionException as err:
        raise ReportFailure("INVALID_VALUE", _summary(err, "")) from None
