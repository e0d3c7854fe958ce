"""small_csv writes the bytes DuckDB's COPY writes: compared on generated values, and
write_query keeps COPY for what small_csv does not take."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reportgrid.engine import output, small_csv
from reportgrid.v1 import reports_pb2 as pb

COLUMNS = {
    "BIGINT": st.integers(-(2**63), 2**63 - 1),
    "HUGEINT": st.integers(-(2**127) + 1, 2**127 - 1),
    "UBIGINT": st.integers(0, 2**64 - 1),
    "TINYINT": st.integers(-128, 127),
    "BOOLEAN": st.booleans(),
    # Every character DuckDB might treat specially, and any other text.
    "VARCHAR": st.text(
        st.sampled_from(list(" ,\"\n\r#\t\\;'x=é\u2028")) | st.characters(), max_size=8
    ),
}


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:", config={"threads": 1})
    yield connection
    connection.close()


def copy_bytes(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> bytes:
    con.execute(f"COPY ({query}) TO '{path}' (FORMAT CSV, HEADER true)")
    data = path.read_bytes()
    path.unlink()
    return data


Table = tuple[list[str], list[str], list[list[object]]]  # types, names, rows


@st.composite
def tables(draw: st.DrawFn) -> Table:
    types = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=4))
    names = draw(
        st.lists(
            st.text(st.sampled_from(list('ab ,"#\n')), min_size=1, max_size=4),
            min_size=len(types),
            max_size=len(types),
            unique_by=str.lower,  # DuckDB's column names are case-insensitive
        )
    )
    rows = draw(st.lists(st.tuples(*(st.none() | COLUMNS[t] for t in types)).map(list), max_size=6))
    return types, names, rows


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables())
def test_render_matches_duckdbs_copy(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, table: Table
) -> None:
    types, names, rows = table
    quoted = ['"' + name.replace('"', '""') + '"' for name in names]
    columns = ", ".join(f"{q} {t}" for q, t in zip(quoted, types, strict=True))
    con.execute("DROP TABLE IF EXISTS t")
    con.execute(f"CREATE TABLE t ({columns})")
    if rows:
        con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(types))})", rows)
    fetched = con.execute("SELECT * FROM t").fetchall()
    expected = copy_bytes(con, "SELECT * FROM t", tmp_path / "t.csv")
    assert small_csv.render(names, fetched) == expected


def test_the_empty_string_and_null_stay_apart() -> None:
    assert small_csv.render(["s"], [[""], [None]]) == b's\n""\n\n'


def test_types_small_csv_does_not_format_are_left_to_copy() -> None:
    assert small_csv.writable(["BIGINT", "VARCHAR", "BOOLEAN"])
    for name in ("DOUBLE", "DECIMAL(18,3)", "DATE", "TIMESTAMP", "BIGINT[]", "BLOB"):
        assert not small_csv.writable(["BIGINT", name])


@pytest.mark.parametrize(
    ("query", "rows"),
    [
        ("SELECT range AS n, 'x' || range AS s FROM range(7)", 7),  # small: Python
        (f"SELECT range AS n FROM range({small_csv.MAX_ROWS + 1})", small_csv.MAX_ROWS + 1),
        ("SELECT range / 3 AS d, DATE '2026-01-02' AS day FROM range(5)", 5),  # COPY's text
        ("SELECT range AS n FROM range(0)", 0),
    ],
)
def test_write_query_gives_copys_bytes_whichever_path_it_takes(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, query: str, rows: int
) -> None:
    result = output.write_query(con, query, pb.OUTPUT_FORMAT_CSV, str(tmp_path))
    assert result.row_count == rows
    assert result.data == copy_bytes(con, query, tmp_path / "expected.csv")
    assert os.listdir(tmp_path) == []  # the COPY's file is removed


@pytest.mark.parametrize(
    "select",
    [
        "SELECT range AS n, 'x,' || range AS s FROM range(4)",  # small_csv writes it
        "SELECT range / 3 AS d, range AS n FROM range(4)",  # a DOUBLE: COPY writes it
    ],
)
def test_write_result_of_a_temp_table_gives_copys_bytes(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, select: str
) -> None:
    cursor = con.cursor()  # a report's connection: its result table is TEMP
    cursor.execute(f"CREATE TEMP TABLE result AS {select}")
    result = output.write_result(cursor, "result", pb.OUTPUT_FORMAT_CSV, str(tmp_path))
    assert result.row_count == 4
    assert result.data == copy_bytes(cursor, "SELECT * FROM result", tmp_path / "expected.csv")
    cursor.close()
