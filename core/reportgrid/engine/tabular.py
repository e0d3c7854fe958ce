"""The tabular engine behind `summary` and `timeseries`: load the input into DuckDB,
check every referenced column against it, and run one grouped SELECT built from the
params. Identifiers are quoted, values are bound parameters; DuckDB does all the work.

Anything wrong with what the user gave (unreadable input, a missing column, a value that
does not parse, a sum out of range) raises ReportFailure naming the column or value: the
report ends FAILED. The connection is reportgrid.engine.session's: hardened, and held to
the run's time, memory and spill limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb

from reportgrid.engine import input_shape, output, schemas
from reportgrid.engine.request import GenerateRequest, GenerateResult, InputData
from reportgrid.engine.session import is_limit_error, open_session
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
from reportgrid.limits import MAX_LISTED_COLUMNS, MAX_QUOTED_NAME_CHARS
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
# An integer sum outside BIGINT raises DuckDB's error() with this text and the aggregate's
# index (our own integer: no user text goes into SQL); _run names the column from it.
_OVERFLOW_MARK: Final = "reportgrid-sum-overflow:"
_OVERFLOW: Final = re.compile(re.escape(_OVERFLOW_MARK) + r"(\d+)")
_BIGINT_MIN: Final = -(2**63)
_BIGINT_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Bucketing:
    """Timeseries: truncate `column` to `interval` and output it first as `output`."""

    column: str
    interval: str
    output: str


def load_input(con: duckdb.DuckDBPyConnection, data: InputData) -> dict[str, str]:
    """Read the input into the table `input`; its columns and types."""
    reader = _READERS.get(data.format)
    fmt = pb.DataFormat.Name(data.format).removeprefix("DATA_FORMAT_")
    if reader is None:
        raise ReportFailure("INPUT_UNREADABLE", f"input format {fmt} is not supported")
    input_shape.check_columns(data.path, data.format)
    try:
        if data.format == pb.DATA_FORMAT_PARQUET:
            input_shape.check_parquet_columns(con, data.path)
        con.execute(
            f"CREATE TEMP TABLE {quote(INPUT_TABLE)} AS SELECT * FROM "  # noqa: S608
            + reader.format(path=literal(data.path))
        )
    except duckdb.Error as err:
        if is_limit_error(err):
            raise  # the session turns it into the run's limit failure
        raise ReportFailure(
            "INPUT_UNREADABLE", f"the input is not readable as {fmt}: {_summary(err, data.path)}"
        ) from None
    columns = describe(con, INPUT_TABLE)
    input_shape.check_loaded_columns(len(columns))
    return columns


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
    with open_session(request) as con:
        columns = load_input(con, request.input)
        request.check()
        types = _prepare_source(con, columns, params, bucket)
        request.check()
        sql, values = build_query(con, params, types, bucket)
        _run(con, sql, values, params)
        request.check()
        return output.write_result(con, RESULT_TABLE, request.output_format, request.work_dir)


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
        named = "; ".join(f"{_name(c)} ({where})" for c, where in missing[:MAX_LISTED_COLUMNS])
        if len(missing) > MAX_LISTED_COLUMNS:
            named += f" and {len(missing) - MAX_LISTED_COLUMNS} more"
        raise ReportFailure(
            "MISSING_COLUMN", f"the input has no column {named}; {_listing(list(columns))}"
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
        f"CREATE TEMP VIEW {quote(SOURCE_VIEW)} AS SELECT {', '.join(selected)} "  # noqa: S608
        f"FROM {quote(INPUT_TABLE)}"
    )
    return {c: conversions[c][1] if c in conversions else t for c, t in columns.items()}


def _name(column: str) -> str:
    """A column name for a message: quoted, and cut when long (names come from the input)."""
    if len(column) <= MAX_QUOTED_NAME_CHARS:
        return repr(column)
    return repr(column[:MAX_QUOTED_NAME_CHARS]) + "…"


def _listing(columns: Sequence[str]) -> str:
    """The input's columns for a message: the first few by name, then how many in all (an
    input may have tens of thousands, and the message is stored with the report)."""
    shown = ", ".join(_name(c) for c in columns[:MAX_LISTED_COLUMNS])
    if len(columns) <= MAX_LISTED_COLUMNS:
        return f"its columns are: {shown}"
    return f"it has {len(columns)} columns, the first {MAX_LISTED_COLUMNS}: {shown}"


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


def aggregate_sql(agg: Mapping[str, Any], types: Mapping[str, str], index: int = 0) -> str:
    """The SQL of aggregate number `index` (it names the aggregate in an overflow)."""
    op = str(agg["op"])
    column = agg.get("column")
    col = quote(column) if column is not None else "*"
    if op == "count":
        return f"count({col})"
    if op == "count_distinct":
        return f"count(DISTINCT {col})"
    if op == "sum":
        # An integer sum is HUGEINT in DuckDB, which not every writer takes; BIGINT is
        # exact, and a sum outside it fails naming its aggregate rather than wrapping.
        if types.get(str(column)) not in INTEGER_TYPES:
            return f"sum({col})"
        total = f"sum({col})"
        return (
            f"CASE WHEN {total} BETWEEN {_BIGINT_MIN} AND {_BIGINT_MAX} "
            f"THEN CAST({total} AS BIGINT) ELSE error('{_OVERFLOW_MARK}{int(index)}') END"
        )
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
    for i, agg in enumerate(params.get("aggregates", [])):
        query.select.append(
            f"{aggregate_sql(agg, types, i)} AS {quote(schemas.aggregate_alias(agg))}"
        )
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


def _run(
    con: duckdb.DuckDBPyConnection, sql: str, values: list[Any], params: Mapping[str, Any]
) -> None:
    try:
        con.execute(f"CREATE TEMP TABLE {quote(RESULT_TABLE)} AS {sql}", values)
    except duckdb.InvalidInputException as err:
        overflow = _OVERFLOW.search(str(err))
        if overflow is None:
            raise
        i = int(overflow.group(1))
        column = str(params["aggregates"][i].get("column", ""))
        raise ReportFailure(
            "VALUE_OUT_OF_RANGE",
            f"the sum of column {_name(column)} (params.aggregates[{i}]) is outside the "
            f"64-bit integer range ({_BIGINT_MIN} to {_BIGINT_MAX}) in at least one group; "
            "sum fewer rows per group (more group_by columns or filters)",
        ) from None
    except duckdb.OutOfRangeException as err:
        raise ReportFailure(
            "VALUE_OUT_OF_RANGE", f"an aggregate overflowed: {_summary(err, '')}"
        ) from None
    except duckdb.ConversionException as err:
        raise ReportFailure("INVALID_VALUE", _summary(err, "")) from None
