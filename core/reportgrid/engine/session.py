"""The one place a report's DuckDB connection is made and held to its limits.

`open_session(request)` gives a connection (a cursor of a database this process keeps, or
a database of the report's own) that
- reads and writes only the run's scratch root: `allowed_directories` is that directory,
  then `enable_external_access = false` (no other file, no network, no extension) and
  `lock_configuration = true` (no SET can undo any of it, nor change the memory, threads,
  spill space or time zone), as DuckDB's "Securing DuckDB" page describes
  (https://duckdb.org/docs/2.0/operations_manual/securing_duckdb/overview.html). DuckDB
  refuses to change `allowed_directories` once external access is off, so the order of
  the statements in `_harden` matters;
- uses at most the run's memory and threads, and spills to a bounded temp directory
  inside that root;
- is interrupted (`DuckDBPyConnection.interrupt()`, from this process's one watchdog
  thread) when the run's deadline passes or the report is cancelled.

A new in-memory database costs about 18 ms of CPU, a cursor of an open one 0.3 ms. So a
runtime that runs one light report at a time passes `GenerateRequest.scratch_root`: the
directory that holds every report's work_dir in this process. The database is opened once
for that root and those limits, and each report gets a cursor of it: its objects are TEMP
(connection-local in DuckDB, dropped with the cursor), so no report sees another's tables.
Without a scratch root the report gets a database of its own, allowed only its work_dir.

Leaving the block turns what DuckDB raised for those limits into the report's outcome:
Cancelled, or ReportFailure TIME_LIMIT_EXCEEDED / RESOURCE_LIMIT.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What a database is opened with: everything `lock_configuration` freezes."""

    root: str  # the only directory it may read or write
    memory_limit_bytes: int | None
    threads: int
    temp_directory_bytes: int | None

    @classmethod
    def of(cls, limits: RunLimits, root: str) -> EngineConfig:
        return cls(
            os.path.realpath(root),
            limits.memory_limit_bytes,
            max(1, limits.threads),
            limits.temp_directory_bytes,
        )


def connect(limits: RunLimits, work_dir: str) -> duckdb.DuckDBPyConnection:
    """A hardened in-memory DuckDB of its own, allowed only `work_dir`, in UTC."""
    return _open(EngineConfig.of(limits, work_dir))


def _open(config: EngineConfig) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": config.threads,
        },
    )
    try:
        for statement in _harden(config):
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


def _harden(config: EngineConfig) -> list[str]:
    temp = os.path.join(config.root, TEMP_SUBDIRECTORY)
    # GLOBAL: every cursor of the database starts from it (and none may change it).
    settings = [
        "SET GLOBAL TimeZone = 'UTC'",
        f"SET temp_directory = {literal(temp)}",
        # The trailing separator: the directory itself, not every path with its prefix.
        f"SET allowed_directories = [{literal(config.root + os.sep)}]",
    ]
    if config.memory_limit_bytes is not None:
        settings.append(f"SET memory_limit = '{config.memory_limit_bytes // _MIB}MiB'")
    if config.temp_directory_bytes is not None:
        settings.append(f"SET max_temp_directory_size = '{config.temp_directory_bytes // _MIB}MiB'")
    return [*settings, "SET enable_external_access = false", "SET lock_configuration = true"]


class _SharedDatabase:
    """The database this process keeps for one EngineConfig (the runtime's is constant;
    one with another config replaces it: cursors still open keep the old one alive)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: EngineConfig | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.opened = 0  # databases opened (tests)

    def cursor(self, config: EngineConfig) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._con is None or self._config != config:
                self._con = _open(config)
                self._config = config
                self.opened += 1
            return self._con.cursor()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con, self._config = None, None


SHARED: Final = _SharedDatabase()


class _Watched:
    __slots__ = ("con", "fired", "request")

    def __init__(self, con: duckdb.DuckDBPyConnection, request: GenerateRequest) -> None:
        self.con = con
        self.request = request
        self.fired: str | None = None  # "cancelled" or "deadline"


class _Watchdog:
    """One daemon thread per process (not one per report): every RUN_CHECK_SECONDS it
    interrupts each watched connection whose report is cancelled or past its deadline,
    and keeps interrupting it (an interrupt between two queries is lost). It sleeps while
    nothing is watched."""

    def __init__(self) -> None:
        self._wakeup = threading.Condition()
        self._watched: dict[int, _Watched] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    def watch(self, con: duckdb.DuckDBPyConnection, request: GenerateRequest) -> _Watched:
        entry = _Watched(con, request)
        if request.limits.deadline is None and request.cancel.path is None:
            return entry  # nothing can fire
        with self._wakeup:
            self._watched[id(entry)] = entry
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="duckdb-watchdog", daemon=True
                )
                self._thread.start()
            self._wakeup.notify()
        return entry

    def unwatch(self, entry: _Watched) -> None:
        with self._wakeup:
            self._watched.pop(id(entry), None)

    def stop(self) -> None:
        """At exit: a daemon thread still running while the interpreter tears DuckDB's
        bindings down makes them report leaked objects."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=1.0)

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                while not self._watched and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
            self._tick()
            with self._wakeup:
                self._wakeup.wait(RUN_CHECK_SECONDS)

    def _tick(self) -> None:
        """One pass (its own frame: the sleeping thread holds no connection, which would
        outlive the report and leak at exit)."""
        with self._wakeup:
            entries = list(self._watched.values())
        for entry in entries:
            if entry.fired is None:
                if entry.request.cancel.is_set():
                    entry.fired = "cancelled"
                elif entry.request.limits.expired():
                    entry.fired = "deadline"
            if entry.fired is not None:
                with self._wakeup:
                    # Not after unwatch: the connection may be closed by then.
                    if id(entry) in self._watched:
                        entry.con.interrupt()


WATCHDOG: Final = _Watchdog()


@atexit.register
def _at_exit() -> None:
    WATCHDOG.stop()
    SHARED.close()


@contextmanager
def open_session(request: GenerateRequest) -> Iterator[duckdb.DuckDBPyConnection]:
    """The report's connection, closed (and its limits turned into outcomes) on exit."""
    limits = request.limits
    if request.scratch_root is not None:
        con = SHARED.cursor(EngineConfig.of(limits, request.scratch_root))
    else:
        con = connect(limits, request.work_dir)
    watched = WATCHDOG.watch(con, request)
    try:
        yield con
    except duckdb.InterruptException:
        if watched.fired == "cancelled" or request.cancel.is_set():
            raise Cancelled from None
        raise time_limit_failure(limits.time_limit_seconds) from None
    except duckdb.OutOfMemoryException:
        raise resource_limit_failure(limits) from None
    finally:
        WATCHDOG.unwatch(watched)
        con.close()  # a cursor's close drops its TEMP objects


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
