"""Each built-in kind, run by the worker runtime against moto + Redis, in every output
format, checked against values computed here in plain Python."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import random
import statistics
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from functions.runner import Outcome
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.workers.conftest import Region, make_task, put_input
from tests.integration.workers.outputs import (
    ALL_FORMATS,
    close,
    percentile,
    result_bytes,
    rows_of,
)

FORMAT_IDS = [pb.OutputFormat.Name(f) for f in ALL_FORMATS]


def _sales(n: int = 120, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    return [
        {
            "region": rnd.choice(["eu", "us", "ap", 'we"ird|one']),
            "product": rnd.choice(["a", "b", "c", "d"]),
            "amount": round(rnd.uniform(1, 500), 2),
            "qty": rnd.randint(0, 9),
            "ts": (start + dt.timedelta(minutes=rnd.randint(0, 60 * 24 * 20))).isoformat(),
        }
        for _ in range(n)
    ]


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _run(region: Region, task: Any) -> tuple[list[dict[str, Any]], Any]:
    result = region.runner().run(task)
    assert result.outcome is Outcome.SUCCEEDED, result
    record = region.get(task.report_id)
    assert record is not None
    assert record.result is not None
    data = result_bytes(record.result, s3=region.services.s3, bucket=region.settings.results_bucket)
    assert hashlib.sha256(data).hexdigest() == record.result.sha256
    assert record.result.size_bytes == len(data)
    return rows_of(data, task.request.output_format), record


SUMMARY_PARAMS = {
    "group_by": ["region"],
    "aggregates": [
        {"op": "count"},
        {"op": "sum", "column": "amount"},
        {"op": "avg", "column": "amount"},
        {"op": "min", "column": "qty"},
        {"op": "max", "column": "qty"},
        {"op": "p90", "column": "amount"},
        {"op": "percentile", "column": "amount", "value": 37.5, "as": "p_low"},
        {"op": "count_distinct", "column": "product"},
    ],
    "filters": [
        {"column": "qty", "op": ">=", "value": 2},
        {"column": "product", "op": "!=", "value": "d"},
    ],
    "sort": [{"column": "sum_amount", "descending": True}],
    "top_n": 3,
}


@pytest.mark.parametrize("output_format", ALL_FORMATS, ids=FORMAT_IDS)
def test_summary_matches_python(region: Region, output_format: int) -> None:
    # Given sales rows (one region name with a quote and a pipe in it)
    sales = _sales()
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sales:
        if row["qty"] >= 2 and row["product"] != "d":
            groups[row["region"]].append(row)
    expected = sorted(
        (
            {
                "region": name,
                "count": len(rows),
                "sum_amount": sum(r["amount"] for r in rows),
                "avg_amount": statistics.fmean(r["amount"] for r in rows),
                "min_qty": min(r["qty"] for r in rows),
                "max_qty": max(r["qty"] for r in rows),
                "p90_amount": statistics.quantiles(
                    [r["amount"] for r in rows], n=10, method="inclusive"
                )[8],
                "p_low": percentile([r["amount"] for r in rows], 37.5),
                "count_distinct_product": len({r["product"] for r in rows}),
            }
            for name, rows in groups.items()
        ),
        key=lambda e: -e["sum_amount"],
    )[:3]

    # When the summary runs over the inline CSV
    task = make_task(
        region.settings, "summary", SUMMARY_PARAMS, inline=_csv(sales), output_format=output_format
    )
    rows, record = _run(region, task)

    # Then every value matches, in order
    assert record.result.row_count == 3
    assert [r["region"] for r in rows] == [e["region"] for e in expected]
    for got, want in zip(rows, expected, strict=True):
        assert list(got) == list(want)
        for name, value in want.items():
            if name != "region":
                assert close(got[name], value), (name, got[name], value)


@pytest.mark.parametrize("output_format", ALL_FORMATS, ids=FORMAT_IDS)
def test_summary_reads_parquet_and_json_from_s3(region: Region, output_format: int) -> None:
    sales = _sales(60, seed=3)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(sales), sink)
    uri = put_input(region, "sales.parquet", sink.getvalue())
    params = {
        "group_by": ["product"],
        "aggregates": [{"op": "sum", "column": "qty"}, {"op": "p50", "column": "amount"}],
    }
    task = make_task(
        region.settings,
        "summary",
        params,
        s3_uri=uri,
        data_format=pb.DATA_FORMAT_PARQUET,
        output_format=output_format,
    )
    rows, _ = _run(region, task)
    by_product: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sales:
        by_product[row["product"]].append(row)
    assert [r["product"] for r in rows] == sorted(by_product)
    for got in rows:
        want = by_product[got["product"]]
        assert int(got["sum_qty"]) == sum(r["qty"] for r in want)
        assert close(got["p50_amount"], statistics.median(r["amount"] for r in want))


@pytest.mark.parametrize("output_format", ALL_FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("interval", ["hour", "day", "week"])
def test_timeseries_matches_python(region: Region, output_format: int, interval: str) -> None:
    sales = _sales(80, seed=11)
    json_lines = "\n".join(__import__("json").dumps(r) for r in sales).encode()

    def bucket(ts: str) -> dt.datetime:
        t = dt.datetime.fromisoformat(ts).astimezone(dt.UTC).replace(tzinfo=None)
        if interval == "hour":
            return t.replace(minute=0, second=0, microsecond=0)
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return day if interval == "day" else day - dt.timedelta(days=day.weekday())

    expected: dict[tuple[dt.datetime, str], list[float]] = defaultdict(list)
    for row in sales:
        expected[(bucket(row["ts"]), row["product"])].append(row["amount"])
    params = {
        "timestamp_column": "ts",
        "interval": interval,
        "group_by": ["product"],
        "aggregates": [{"op": "count", "as": "n"}, {"op": "max", "column": "amount"}],
    }
    task = make_task(
        region.settings,
        "timeseries",
        params,
        inline=json_lines,
        data_format=pb.DATA_FORMAT_JSON,
        output_format=output_format,
    )
    rows, _ = _run(region, task)

    def when(value: Any) -> dt.datetime:
        return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)

    got = {(when(r["bucket"]), r["product"]): r for r in rows}
    assert list(got) == sorted(expected)  # bucket order, then product
    for key, amounts in expected.items():
        assert int(got[key]["n"]) == len(amounts)
        assert close(got[key]["max_amount"], max(amounts))


@pytest.mark.parametrize("output_format", ALL_FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("kind", ["synthetic", "synthetic_heavy"])
def test_synthetic_rows_follow_the_seed(region: Region, output_format: int, kind: str) -> None:
    params = {"cpu_ms": 20, "output_rows": 25, "output_bytes": 25 * 70, "seed": 42}
    task = make_task(region.settings, kind, params, output_format=output_format)
    rows, record = _run(region, task)
    assert record.result.row_count == 25
    assert len(rows) == 25
    for i, row in enumerate(rows):
        payload = "".join(hashlib.md5(f"42:{i}:{j}".encode()).hexdigest() for j in range(3))[:70]
        assert int(row["row"]) == i
        assert int(row["value"]) == (i * 7919 + 42) % 10007
        assert row["payload"] == payload
