"""The one place a report's DuckDB connection is made and held to its limits.

`open_session(request)` gives a connection that
- reads and writes only the report's own scratch directory: `allowed_directories` is that
  directory, then `enable_external_access = false` (no other file, no network, no
  extension) and `lock_configuration = true` (no SET can undo any of it), as DuckDB's
  "Securing DuckDB" page describes
  (https://duckdb.org/docs/2.0/operations_manual/securing_duckdb/overview.html);
- uses at most the run's memory and threads, and spills to a bounded temp directory
  inside that scratch directory;
- is interrupted (`DuckDBPyConnection.interrupt()`, from a watchdog thread) when the run's
  deadline passes or the report is cancelled.

Leaving the block turns what DuckDB raised for those limits into the report's outcome:
Cancelled, or ReportFailure TIME_LIMIT_EXCEEDED / RESOURCE_LIMIT.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import duckdb

from reportgrid.engine.exceptions import Cancelled
from reportgrid.engine.request import (
    RESOURCE_LIMIT,
    GenerateRequest,
    RunLimits,
    time_limit_failure,
)
from reportgrid.engine.sql import literal
from reportgrid.errors import ReportFailure
from reportgrid.limits import RUN_CHECK_SECONDS

TEMP_SUBDIRECTORY: Final = "duckdb-tmp"
_MIB: Final = 1024 * 1024


def connect(limits: RunLimits, work_dir: str) -> duckdb.DuckDBPyConnection:
    """A hardened in-memory DuckDB for one report (see the module docstring), in UTC."""
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": max(1, limits.threads),
        },
    )
    try:
        root = os.path.realpath(work_dir)
        temp = os.path.join(root, TEMP_SUBDIRECTORY)
        settings = [
            "SET TimeZone = 'UTC'",
            f"SET temp_directory = {literal(temp)}",
            # The trailing separator: the directory itself, not every path with its prefix.
            f"SET allowed_directories = [{literal(root + os.sep)}]",
        ]
        if limits.memory_limit_bytes is not None:
            settings.append(f"SET memory_limit = '{limits.memory_limit_bytes // _MIB}MiB'")
        if limits.temp_directory_bytes is not None:
            settings.append(
                f"SET max_temp_directory_size = '{limits.temp_directory_bytes // _MIB}MiB'"
            )
        settings += ["SET enable_external_access = false", "SET lock_configuration = true"]
        for statement in settings:
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


class _Watchdog:
    """Interrupts the connection's running query once the deadline passes or the report
    is cancelled, and keeps interrupting (an interrupt between two queries is lost)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, request: GenerateRequest) -> None:
        self._con = con
        self._request = request
        self._stop = threading.Event()
        self.fired: str | None = None  # "cancelled" or "deadline"
        self._thread = threading.Thread(target=self._loop, name="duckdb-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        if self._request.limits.deadline is not None or self._request.cancel.path is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(RUN_CHECK_SECONDS):
            if self.fired is None:
                if self._request.cancel.is_set():
                    self.fired = "cancelled"
                elif self._request.limits.expired():
                    self.fired = "deadline"
            if self.fired is not None:
                self._con.interrupt()


@contextmanager
def open_session(request: GenerateRequest) -> Iterator[duckdb.DuckDBPyConnection]:
    """The report's connection, closed (and its limits turned into outcomes) on exit."""
    limits = request.limits
    con = connect(limits, request.work_dir)
    watchdog = _Watchdog(con, request)
    try:
        with watchdog:
            yield con
    except duckdb.InterruptException:
        if watchdog.fired == "cancelled" or request.cancel.is_set():
            raise Cancelled from None
        raise time_limit_failure(limits.time_limit_seconds) from None
    except duckdb.OutOfMemoryException:
        raise resource_limit_failure(limits) from None
    finally:
        con.close()


def resource_limit_failure(limits: RunLimits) -> ReportFailure:
    memory = (
        f"{limits.memory_limit_bytes // _MIB} MiB of memory"
        if limits.memory_limit_bytes is not None
        else "the memory available"
    )
    spill = (
        f" and {limits.temp_directory_bytes // _MIB} MiB of spill space"
        if limits.temp_directory_bytes is not None
        else ""
    )
    return ReportFailure(
        RESOURCE_LIMIT,
        f"the report needs more than its {memory}{spill}; make it smaller (less input, "
        "shorter values, fewer groups)",
    )


def is_limit_error(err: BaseException) -> bool:
    """DuckDB errors that belong to the session (a limit or an interrupt), not to the
    user's input: callers that wrap other DuckDB errors let these through."""
    return isinstance(err, duckdb.InterruptException | duckdb.OutOfMemoryException)
