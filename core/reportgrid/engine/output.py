"""Result writers: the table `result` in a DuckDB connection -> the bytes of one output
format. CSV, JSON and Parquet are written by DuckDB's COPY (a small CSV result by small_csv,
byte for byte as COPY would); Markdown is a table we format."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from reportgrid.engine import small_csv
from reportgrid.engine.request import GenerateResult
from reportgrid.engine.sql import literal, quote
from reportgrid.records import CONTENT_TYPES
from reportgrid.v1 import reports_pb2 as pb

if TYPE_CHECKING:
    import duckdb

_COPY_OPTIONS = {
    pb.OUTPUT_FORMAT_CSV: "FORMAT CSV, HEADER true",
    pb.OUTPUT_FORMAT_JSON: "FORMAT JSON, ARRAY true",
    pb.OUTPUT_FORMAT_PARQUET: "FORMAT PARQUET, COMPRESSION zstd",
}


def write_result(
    con: duckdb.DuckDBPyConnection,
    table: str,
    output_format: pb.OutputFormat.ValueType,
    work_dir: str,
) -> GenerateResult:
    # The table's types are in the catalog: a result small_csv cannot write (a DOUBLE, a
    # date) goes straight to COPY, without a scan that would only look at them.
    csv = output_format in (pb.OUTPUT_FORMAT_UNSPECIFIED, pb.OUTPUT_FORMAT_CSV)
    simple = csv and small_csv.writable([str(t) for t in con.table(table).types])
    query = f"SELECT * FROM {quote(table)}"  # noqa: S608
    return write_query(con, query, output_format, work_dir, try_small=simple)


def write_query(
    con: duckdb.DuckDBPyConnection,
    query: str,
    output_format: pb.OutputFormat.ValueType,
    work_dir: str,
    *,
    try_small: bool = True,
) -> GenerateResult:
    """The rows of `query` (our own SQL) in one output format: one statement where it can,
    since each costs DuckDB ~0.2 ms of CPU however small (COPY returns the rows it wrote).

    A small CSV result of simple types is fetched and written in Python (small_csv: the
    same bytes, without the COPY's ~1 ms); a larger one runs `query` again under COPY, so
    `query` must be cheap to run twice: a scan of a result table or a generator.
    `try_small=False`: the caller knows small_csv cannot write these types."""
    output_format = output_format or pb.OUTPUT_FORMAT_CSV
    if output_format == pb.OUTPUT_FORMAT_CSV and try_small:
        small = _small_csv(con, query)
        if small is not None:
            return small
    if output_format == pb.OUTPUT_FORMAT_MARKDOWN:
        cursor = con.execute(query)
        names = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchall()
        data = markdown_table(names, rows).encode()
        row_count = len(rows)
    else:
        path = os.path.join(work_dir, f"result.{pb.OutputFormat.Name(output_format).lower()}")
        written = con.execute(
            f"COPY ({query}) TO {literal(path)} ({_COPY_OPTIONS[output_format]})"
        ).fetchone()
        row_count = int(written[0]) if written else 0
        with open(path, "rb") as f:
            data = f.read()
        os.remove(path)
    return GenerateResult(data, row_count, CONTENT_TYPES[output_format])


def _small_csv(con: duckdb.DuckDBPyConnection, query: str) -> GenerateResult | None:
    cursor = con.execute(query)
    description = cursor.description or ()
    if not small_csv.writable([str(d[1]) for d in description]):
        return None
    rows = cursor.fetchmany(small_csv.MAX_ROWS + 1)
    if len(rows) > small_csv.MAX_ROWS:
        return None
    data = small_csv.render([d[0] for d in description], rows)
    return GenerateResult(data, len(rows), CONTENT_TYPES[pb.OUTPUT_FORMAT_CSV])


def markdown_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, NULL as an empty cell."""
    numeric = [
        all(isinstance(r[i], int | float) or r[i] is None for r in rows) and bool(rows)
        for i in range(len(names))
    ]
    lines = [
        "| " + " | ".join(_cell(n) for n in names) + " |",
        "| " + " | ".join("---:" if num else "---" for num in numeric) + " |",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
