"""DuckDB's CSV bytes for a small result, written in Python from the fetched rows.

A COPY costs DuckDB about a millisecond of CPU however few rows it writes (the CSV writer,
a file created, written, closed and read back), more than the query that made the rows; a
light report's result is usually a few rows. For a result of at most `MAX_ROWS` rows whose
columns are all of a type in `TYPES`, this module writes the same bytes DuckDB's
`COPY ... (FORMAT CSV, HEADER true)` writes (tests/unit/engine/test_small_csv.py compares
them on generated values):
- NULL is an empty field; the empty string is `""` (so the two stay apart);
- a field is quoted when it contains the delimiter, the quote, a line break or `#`, and a
  quote inside is doubled; leading and trailing spaces are kept unquoted;
- integers in decimal, booleans as `true` / `false`; one `\\n` per row, header first.
Other types (floats, decimals, dates, timestamps, lists...) are formatted by DuckDB's COPY:
their text is DuckDB's own and not worth a second implementation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from reportgrid.engine import sql

# Above this many rows the COPY is as cheap or cheaper than Python formatting.
MAX_ROWS: Final = 1_000

TYPES: Final = sql.INTEGER_TYPES | sql.TEXT_TYPES | {"BOOLEAN"}

_NEEDS_QUOTES: Final = re.compile('[,"\n\r#]')


def writable(type_names: Sequence[str]) -> bool:
    """Whether every column's DuckDB type (its name, as `cursor.description` gives it) is
    one this module formats exactly as DuckDB does."""
    return all(name in TYPES for name in type_names)


def render(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    lines = [",".join(_text(name) for name in names)]
    lines += [",".join(_field(value) for value in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _field(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    return _text(value)


def _text(value: str) -> str:
    if value == "" or _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value
