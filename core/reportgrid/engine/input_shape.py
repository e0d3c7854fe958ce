"""An input's width, counted before DuckDB reads it: its cost grows with the columns far
faster than with the bytes (a 40,000-column CSV of a few MB exhausts a worker's memory),
so a CSV/JSON input over reportgrid.limits.MAX_INPUT_COLUMNS ends FAILED at once with a
message naming the limit, instead of RESOURCE_LIMIT after a long read.

Only a bounded prefix of the file is read: the CSV header, split as DuckDB's sniffer might
split it (the candidate delimiter giving the most fields), or the top-level keys of the
JSON records in the prefix. What the prefix cannot show (a JSON file whose records bring
new keys late) is checked again on the loaded table (`check_loaded_columns`). A Parquet
file's columns are counted from its footer (`check_parquet_columns`): the load selects
every column, so a wide file costs as much as a wide CSV.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Final

import duckdb

from reportgrid.errors import ReportFailure
from reportgrid.limits import MAX_INPUT_COLUMNS
from reportgrid.v1 import reports_pb2 as pb

TOO_WIDE_REASON: Final = "INPUT_TOO_LARGE"
# How much of the file is read to count: a header of MAX_INPUT_COLUMNS names of up to
# ~200 characters each fits (a wider header is counted as far as it goes).
PREFIX_BYTES: Final = 4 * 1024 * 1024
# The delimiters DuckDB's CSV sniffer tries (read_csv auto_detect).
_CSV_DELIMITERS: Final = (",", "|", ";", "\t")
_JSON_RECORDS: Final = 1000


def too_wide(columns: int, *, at_least: bool) -> ReportFailure:
    more = " or more" if at_least else ""
    return ReportFailure(
        TOO_WIDE_REASON,
        f"the input has {columns} columns{more}; an input may have at most "
        f"{MAX_INPUT_COLUMNS} columns (limit MAX_INPUT_COLUMNS): select fewer columns "
        "before uploading it",
    )


def count_columns(path: str, fmt: pb.DataFormat.ValueType) -> int:
    """The input's columns as far as its first PREFIX_BYTES show (0 for other formats)."""
    if fmt not in (pb.DATA_FORMAT_CSV, pb.DATA_FORMAT_JSON):
        return 0  # Parquet's schema is in its footer: check_parquet_columns
    with open(path, "rb") as f:
        prefix = f.read(PREFIX_BYTES)
    text = prefix.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return _csv_header_columns(text) if fmt == pb.DATA_FORMAT_CSV else _json_keys(text)


def check_columns(path: str, fmt: pb.DataFormat.ValueType) -> None:
    """ReportFailure before the read when the input is wider than the limit."""
    columns = count_columns(path, fmt)
    if columns > MAX_INPUT_COLUMNS:
        raise too_wide(columns, at_least=True)


def check_parquet_columns(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """ReportFailure before the read when a Parquet input's schema is wider than the limit.
    parquet_schema reads only the footer: one row per schema element, the leaves (the
    columns) without children."""
    found = con.execute(
        "SELECT count(*) FROM parquet_schema(?) WHERE num_children IS NULL", [path]
    ).fetchone()
    columns = int(found[0]) if found else 0
    if columns > MAX_INPUT_COLUMNS:
        raise too_wide(columns, at_least=False)


def check_loaded_columns(columns: int) -> None:
    if columns > MAX_INPUT_COLUMNS:
        raise too_wide(columns, at_least=False)


def _csv_header_columns(text: str) -> int:
    widest = 0
    for delimiter in _CSV_DELIMITERS:
        try:
            header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
        except csv.Error:
            continue  # e.g. a NUL byte: DuckDB names the problem
        widest = max(widest, len(header))
    return widest


def _json_keys(text: str) -> int:
    """Distinct top-level keys of the first records of a JSON array or of JSON lines."""
    decoder = json.JSONDecoder()
    keys: set[str] = set()
    at = len(text) - len(text.lstrip())
    if text[at : at + 1] == "[":
        at += 1
    for _ in range(_JSON_RECORDS):
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        if at >= len(text) or text[at] == "]":
            break
        try:
            record, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            break  # cut by the prefix, or not JSON: DuckDB names the problem
        if isinstance(record, dict):
            keys.update(record)
            if len(keys) > MAX_INPUT_COLUMNS:
                break
    return len(keys)
