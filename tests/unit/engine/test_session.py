"""The engine's DuckDB session and its limits (issue 19.5, 19.6, 19.7, 19.11, Low): the
real generators on real DuckDB, given a request as the runtime builds it."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from reportgrid.engine import input_shape, session, synthetic_gen, tabular
from reportgrid.engine.exceptions import Cancelled
from reportgrid.engine.request import (
    RESOURCE_LIMIT,
    TIME_LIMIT_EXCEEDED,
    CancelFlag,
    GenerateRequest,
    InputData,
    RunLimits,
)
from reportgrid.errors import ReportFailure
from reportgrid.limits import MAX_ERROR_MESSAGE_BYTES, MAX_INPUT_COLUMNS, MAX_LISTED_COLUMNS
from reportgrid.v1 import reports_pb2 as pb

MIB = 1024 * 1024


def _request(
    work_dir: Path,
    params: dict[str, Any],
    *,
    csv: bytes | None = None,
    limits: RunLimits | None = None,
    cancel: CancelFlag | None = None,
    path: Path | None = None,
    data_format: pb.DataFormat.ValueType = pb.DATA_FORMAT_CSV,
) -> GenerateRequest:
    data = None
    if csv is not None or path is not None:
        if path is None:
            path = work_dir / "input.csv"
            path.write_bytes(csv or b"")
        data = InputData(data_format, str(path))
    return GenerateRequest(
        report_id="r-1",
        params=params,
        output_format=pb.OUTPUT_FORMAT_CSV,
        work_dir=str(work_dir),
        input=data,
        cancel=cancel or CancelFlag(),
        limits=limits or RunLimits(),
    )


def _summary(request: GenerateRequest) -> Any:
    return tabular.run_tabular(request, bucket=None)


# --- 19.11: hardening -------------------------------------------------------------------


def test_the_session_reads_no_file_outside_the_work_dir(tmp_path: Path) -> None:
    request = _request(tmp_path, {})
    with session.open_session(request) as con:
        tabular.load_input(con, InputData(pb.DATA_FORMAT_CSV, _write(tmp_path, b"a\n1\n")))
        for query in (
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM read_text('/etc/hostname')",
            "SELECT * FROM glob('/etc/*')",
            f"COPY input TO '{tmp_path.parent}/out.csv'",
            "ATTACH '/tmp/reportgrid-elsewhere.db'",
            "INSTALL httpfs",
        ):
            with pytest.raises((duckdb.PermissionException, duckdb.Error)) as caught:
                con.execute(query)
            assert "disabled" in str(caught.value) or "Permission" in type(caught.value).__name__


def test_no_setting_can_be_changed_after_the_session_is_locked(tmp_path: Path) -> None:
    limits = RunLimits(memory_limit_bytes=128 * MIB, threads=1, temp_directory_bytes=64 * MIB)
    with session.open_session(_request(tmp_path, {}, limits=limits)) as con:
        for statement in (
            "SET enable_external_access = true",
            "SET memory_limit = '100GB'",
            "SET lock_configuration = false",
            "RESET allowed_directories",
        ):
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                con.execute(statement)
        row = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('enable_external_access'), current_setting('temp_directory')"
        ).fetchone()
    assert row is not None
    assert row[1:3] == (1, False)
    assert row[3].startswith(str(tmp_path.resolve()))
    assert "128" in row[0] or "122" in row[0]  # DuckDB shows MiB or its own rounding


def test_a_user_identifier_that_reads_a_file_is_only_a_missing_column(tmp_path: Path) -> None:
    hostile = "x\" FROM read_csv('/etc/passwd') --"
    request = _request(
        tmp_path,
        {"group_by": [hostile], "aggregates": [{"op": "count"}]},
        csv=b"region,amount\neu,1\n",
    )
    with pytest.raises(ReportFailure) as caught:
        _summary(request)
    assert caught.value.reason == "MISSING_COLUMN"
    assert "root" not in caught.value.message


def _write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    return str(path)


# --- 19.5: the deadline -----------------------------------------------------------------


def test_a_query_past_the_deadline_is_interrupted(tmp_path: Path) -> None:
    limits = RunLimits(deadline=time.time() + 0.3, time_limit_seconds=0.3)
    started = time.monotonic()
    with (
        pytest.raises(ReportFailure) as caught,
        session.open_session(_request(tmp_path, {}, limits=limits)) as con,
    ):
        con.execute("SELECT count(*) FROM range(100000000000) a")  # minutes uninterrupted
    took = time.monotonic() - started
    assert caught.value.reason == TIME_LIMIT_EXCEEDED
    assert "0.3 s" in caught.value.message
    assert took < 3, took


def test_a_cancelled_report_interrupts_its_query(tmp_path: Path) -> None:
    flag = CancelFlag(str(tmp_path / "cancel"))
    request = _request(tmp_path, {}, cancel=flag)
    threading.Timer(0.2, flag.set).start()
    with pytest.raises(Cancelled), session.open_session(request) as con:
        con.execute("SELECT count(*) FROM range(100000000000) a")


def test_the_synthetic_generator_stops_at_its_deadline(tmp_path: Path) -> None:
    limits = RunLimits(deadline=time.time() + 0.3, time_limit_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(ReportFailure) as caught:
        synthetic_gen.generate(_request(tmp_path, {"cpu_ms": 30_000}, limits=limits))
    assert caught.value.reason == TIME_LIMIT_EXCEEDED
    assert time.monotonic() - started < 2


# --- 19.7: memory -----------------------------------------------------------------------


def test_an_input_over_the_memory_and_spill_limits_ends_resource_limit(tmp_path: Path) -> None:
    # Given a ~2 KB Parquet file that holds 200 MB of text
    parquet = tmp_path / "big.parquet"
    writer = duckdb.connect()
    writer.execute(
        "COPY (SELECT repeat('x', 1000000) AS t, range AS i FROM range(200)) "
        f"TO '{parquet}' (FORMAT PARQUET, COMPRESSION zstd)"
    )
    writer.close()
    assert parquet.stat().st_size < 64 * 1024
    limits = RunLimits(memory_limit_bytes=64 * MIB, threads=1, temp_directory_bytes=32 * MIB)
    request = _request(
        tmp_path,
        {"group_by": ["i"], "aggregates": [{"op": "count"}]},
        path=parquet,
        data_format=pb.DATA_FORMAT_PARQUET,
        limits=limits,
    )
    with pytest.raises(ReportFailure) as caught:
        _summary(request)
    assert caught.value.reason == RESOURCE_LIMIT
    assert "64 MiB of memory and 32 MiB of spill space" in caught.value.message


# --- 19.6: bounded messages -------------------------------------------------------------


def test_a_missing_column_among_4000_lists_a_few_and_a_count(tmp_path: Path) -> None:
    header = ",".join(f"column_with_a_long_name_{i}" for i in range(4_000)).encode()
    request = _request(
        tmp_path,
        {"group_by": ["nope"], "aggregates": [{"op": "count"}]},
        csv=header + b"\n" + b",".join(b"1" for _ in range(4_000)) + b"\n",
    )
    with pytest.raises(ReportFailure) as caught:
        _summary(request)
    message = caught.value.message
    assert caught.value.reason == "MISSING_COLUMN"
    assert len(message.encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert "'nope' (params.group_by[0])" in message
    assert "4000 columns" in message
    assert f"column_with_a_long_name_{MAX_LISTED_COLUMNS - 1}'" in message
    assert f"column_with_a_long_name_{MAX_LISTED_COLUMNS}'" not in message


# --- Low: an integer sum out of range ---------------------------------------------------


def test_a_bigint_sum_overflow_names_its_column(tmp_path: Path) -> None:
    big = 2**63 - 1
    request = _request(
        tmp_path,
        {
            "group_by": ["g"],
            "aggregates": [
                {"op": "sum", "column": "small"},
                {"op": "sum", "column": "huge"},
            ],
        },
        csv=f"g,small,huge\na,1,{big}\na,2,{big}\nb,3,1\n".encode(),
    )
    with pytest.raises(ReportFailure) as caught:
        _summary(request)
    assert caught.value.reason == "VALUE_OUT_OF_RANGE"
    assert "'huge' (params.aggregates[1])" in caught.value.message
    assert "Conversion Error" not in caught.value.message


def test_an_integer_sum_in_range_is_exact(tmp_path: Path) -> None:
    big = 2**62
    request = _request(
        tmp_path,
        {"aggregates": [{"op": "sum", "column": "v"}]},
        csv=f"v\n{big}\n{big - 1}\n-5\n".encode(),
    )
    result = _summary(request)
    assert result.data.decode().splitlines()[1] == str(2 * big - 6)


# --- issue 22: one database per process, a cursor per report ------------------------------


def _shared_request(root: Path, name: str, params: dict[str, Any], **kwargs: Any) -> Any:
    work = root / name
    work.mkdir()
    return dataclasses.replace(_request(work, params, **kwargs), scratch_root=str(root))


def test_reports_with_a_scratch_root_share_one_database_but_not_their_tables(
    tmp_path: Path,
) -> None:
    limits = RunLimits(memory_limit_bytes=128 * MIB, threads=1, temp_directory_bytes=64 * MIB)
    first = _shared_request(tmp_path, "a", {}, limits=limits)
    second = _shared_request(tmp_path, "b", {}, limits=limits)
    opened = session.SHARED.opened
    with session.open_session(first) as a, session.open_session(second) as b:
        a.execute("CREATE TEMP TABLE mine AS SELECT 1 AS v")
        # Another report's cursor sees none of its tables, and loads its own input
        with pytest.raises(duckdb.CatalogException):
            b.execute("SELECT * FROM mine")
        for con, request in ((a, first), (b, second)):
            data = InputData(pb.DATA_FORMAT_CSV, _write(Path(request.work_dir), b"a\n1\n"))
            assert tabular.load_input(con, data) == {"a": "BIGINT"}
    assert session.SHARED.opened == opened + 1
    # And its objects are gone with its cursor
    with session.open_session(first) as again, pytest.raises(duckdb.CatalogException):
        again.execute("SELECT * FROM mine")
    assert session.SHARED.opened == opened + 1


def test_a_shared_database_reads_its_input_but_no_other_file_and_stays_locked(
    tmp_path: Path,
) -> None:
    limits = RunLimits(memory_limit_bytes=128 * MIB, threads=1, temp_directory_bytes=64 * MIB)
    (tmp_path / "root").mkdir()
    request = _shared_request(tmp_path / "root", "r", {}, limits=limits)
    data = InputData(pb.DATA_FORMAT_CSV, _write(Path(request.work_dir), b"a\n1\n"))
    with session.open_session(request) as con:
        assert tabular.load_input(con, data) == {"a": "BIGINT"}
        for query in (
            "SELECT * FROM read_csv('/etc/passwd')",
            f"COPY input TO '{tmp_path}/out.csv'",
        ):
            with pytest.raises(duckdb.PermissionException):
                con.execute(query)
        for statement in (
            "SET enable_external_access = true",
            "SET memory_limit = '100GB'",
            "SET GLOBAL threads = 8",
            "SET TimeZone = 'Europe/Paris'",
        ):
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                con.execute(statement)
        row = con.execute(
            "SELECT current_setting('threads'), current_setting('TimeZone')"
        ).fetchone()
    assert row == (1, "UTC")


def test_one_watchdog_thread_interrupts_a_shared_cursor_past_its_deadline(
    tmp_path: Path,
) -> None:
    for name in ("a", "b", "c"):
        with session.open_session(
            _shared_request(tmp_path, name, {}, limits=RunLimits(deadline=time.time() + 60))
        ) as con:
            con.execute("SELECT 1")
    limits = RunLimits(deadline=time.time() + 0.3, time_limit_seconds=0.3)
    started = time.monotonic()
    with (
        pytest.raises(ReportFailure) as caught,
        session.open_session(_shared_request(tmp_path, "slow", {}, limits=limits)) as con,
    ):
        con.execute("SELECT count(*) FROM range(100000000000) a")
    assert caught.value.reason == TIME_LIMIT_EXCEEDED
    assert time.monotonic() - started < 3
    watchdogs = [t for t in threading.enumerate() if t.name == "duckdb-watchdog"]
    assert len(watchdogs) == 1


# --- issue 22: an input's columns are counted before DuckDB reads it ----------------------


def test_a_csv_wider_than_the_limit_fails_before_duckdb_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    columns = MAX_INPUT_COLUMNS + 1
    header = ";".join(f"c{i}" for i in range(columns)).encode()
    request = _request(
        tmp_path,
        {"group_by": ["c0"], "aggregates": [{"op": "count"}]},
        csv=header + b"\n" + b";".join(b"1" for _ in range(columns)) + b"\n",
    )

    def no_read(*_: Any) -> str:
        raise AssertionError("the statement that reads the input was built")

    monkeypatch.setattr(tabular, "quote", no_read)
    with pytest.raises(ReportFailure) as caught:
        _summary(request)
    assert caught.value.reason == "INPUT_TOO_LARGE"
    assert f"{columns} columns" in caught.value.message
    assert f"at most {MAX_INPUT_COLUMNS} columns (limit MAX_INPUT_COLUMNS)" in caught.value.message


def test_json_records_are_counted_by_their_keys(tmp_path: Path) -> None:
    wide = tmp_path / "wide.json"
    keys = MAX_INPUT_COLUMNS + 5
    records = [{f"k{i}": 1 for i in range(start, keys, 2)} for start in (0, 1)]
    wide.write_text(json.dumps(records))
    assert input_shape.count_columns(str(wide), pb.DATA_FORMAT_JSON) == keys
    lines = tmp_path / "narrow.json"
    lines.write_text('{"a": 1, "b": "x,y;z"}\n{"a": 2, "c": null}\n')
    assert input_shape.count_columns(str(lines), pb.DATA_FORMAT_JSON) == 3
    csv = tmp_path / "quoted.csv"
    csv.write_text('"a,b",c\n1,2\n')
    assert input_shape.count_columns(str(csv), pb.DATA_FORMAT_CSV) == 2


def test_a_parquet_file_wider_than_the_limit_fails_from_its_footer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Parquet file with 8 columns and a limit of 5 (the footer holds the schema)
    path = tmp_path / "wide.parquet"
    columns = ", ".join(f"{i} AS c{i}" for i in range(8))
    duckdb.execute(f"COPY (SELECT {columns}) TO '{path}' (FORMAT parquet)")
    monkeypatch.setattr(input_shape, "MAX_INPUT_COLUMNS", 5)
    request = _request(
        tmp_path,
        {"group_by": ["c0"], "aggregates": [{"op": "count"}]},
        path=path,
        data_format=pb.DATA_FORMAT_PARQUET,
    )

    def no_read(*_: Any) -> str:
        raise AssertionError("the statement that reads the input was built")

    monkeypatch.setattr(tabular, "quote", no_read)
    # Then the report fails before the read, naming the width and the limit
    with pytest.raises(ReportFailure) as caught:
        _summary(request)
    assert caught.value.reason == "INPUT_TOO_LARGE"
    assert "the input has 8 columns; an input may have at most 5 columns" in caught.value.message
