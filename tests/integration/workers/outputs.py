"""Independent readers of result bytes (csv, json, pyarrow, a Markdown table parser) and
reference computations in plain Python, so tests never check DuckDB with DuckDB."""

from __future__ import annotations

import csv
import io
import json
import math
import zlib
from collections.abc import Sequence
from typing import Any

import pyarrow.parquet as pq

from reportgrid.records import ResultInfo
from reportgrid.v1 import reports_pb2 as pb


def result_bytes(info: ResultInfo, *, s3: Any, bucket: str | None) -> bytes:
    """A stored result's bytes: inline in the record, or the zlib-compressed S3 object the
    worker wrote (reportgrid/results.py)."""
    if info.inline_compressed is not None:
        return zlib.decompress(info.inline_compressed)
    assert info.s3_key is not None
    assert bucket
    return zlib.decompress(s3.get_object(Bucket=bucket, Key=info.s3_key)["Body"].read())


def rows_of(data: bytes, output_format: int) -> list[dict[str, Any]]:
    """Result rows as dicts; CSV and Markdown values are strings."""
    if output_format == pb.OUTPUT_FORMAT_CSV:
        return list(csv.DictReader(io.StringIO(data.decode())))
    if output_format == pb.OUTPUT_FORMAT_JSON:
        parsed = json.loads(data)
        assert isinstance(parsed, list)
        return parsed
    if output_format == pb.OUTPUT_FORMAT_PARQUET:
        return pq.read_table(io.BytesIO(data)).to_pylist()
    lines = data.decode().strip().splitlines()
    header = _cells(lines[0])
    assert set(lines[1].replace("|", "").split()) <= {"---", "---:"}
    return [dict(zip(header, _cells(line), strict=True)) for line in lines[2:]]


def _cells(line: str) -> list[str]:
    assert line.startswith("| ")
    assert line.endswith(" |")
    return [c.replace("\\|", "|") for c in line[2:-2].split(" | ")]


def percentile(values: Sequence[float], percent: float) -> float:
    """Linear interpolation between closest ranks (the definition the kinds document)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def close(actual: Any, expected: float) -> bool:
    return math.isclose(float(actual), expected, rel_tol=1e-9, abs_tol=1e-9)


ALL_FORMATS = (
    pb.OUTPUT_FORMAT_CSV,
    pb.OUTPUT_FORMAT_JSON,
    pb.OUTPUT_FORMAT_PARQUET,
    pb.OUTPUT_FORMAT_MARKDOWN,
)
