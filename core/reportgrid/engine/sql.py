"""Safe SQL building blocks: identifiers are quoted, values are bound parameters, and the
only type names spliced into SQL come from a fixed list (never from the data)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from reportgrid.errors import ReportFailure

if TYPE_CHECKING:
    import duckdb

NUMERIC_TYPES: Final = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "DOUBLE",
    }
)
INTEGER_TYPES: Final = NUMERIC_TYPES - {"FLOAT", "DOUBLE"}
TEXT_TYPES: Final = frozenset({"VARCHAR"})
TIME_TYPES: Final = frozenset(
    {"DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}
)
# Scalar types a filter value may be cast to (the name is spliced into SQL, so only these).
CASTABLE_TYPES: Final = NUMERIC_TYPES | TEXT_TYPES | TIME_TYPES | {"BOOLEAN", "TIME"}
_DECIMAL: Final = re.compile(r"^DECIMAL\(\d{1,2},\d{1,2}\)$")


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted so any column name (quotes included) is just a name."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A string literal, for our own file paths only (user values are always bound)."""
    return "'" + text.replace("'", "''") + "'"


def is_numeric(type_name: str) -> bool:
    return type_name in NUMERIC_TYPES or bool(_DECIMAL.match(type_name))


def castable(type_name: str) -> bool:
    return type_name in CASTABLE_TYPES or bool(_DECIMAL.match(type_name))


def first_value_failing(
    con: duckdb.DuckDBPyConnection, table: str, column: str, target: str
) -> Any:
    """The first non-null value of `column` that does not convert to `target`, or None."""
    row = con.execute(
        f"SELECT {quote(column)} FROM {quote(table)} "  # noqa: S608 - quoted identifiers
        f"WHERE {quote(column)} IS NOT NULL AND TRY_CAST({quote(column)} AS {target}) IS NULL "
        "LIMIT 1"
    ).fetchone()
    return None if row is None else row[0]


def describe(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type name, in table order."""
    rows = con.execute(f"DESCRIBE {quote(table)}").fetchall()
    return {str(name): str(type_name) for name, type_name, *_ in rows}


def require_castable(column: str, type_name: str, where: str) -> None:
    if not castable(type_name):
        raise ReportFailure(
            "INVALID_COLUMN_TYPE",
            f"column {column!r} ({where}) has type {type_name}, which cannot be filtered or "
            "aggregated this way",
        )
