"""What a generator is given and what it returns.

Both are plain, picklable values: the queue worker runs generators in a process pool, so a
request crosses a process boundary, and so does the cancellation check (a file flag).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgrid.engine.exceptions import Cancelled
from reportgrid.errors import ReportFailure
from reportgrid.v1 import reports_pb2 as pb

TIME_LIMIT_EXCEEDED = "TIME_LIMIT_EXCEEDED"
RESOURCE_LIMIT = "RESOURCE_LIMIT"


@dataclass(frozen=True, slots=True)
class CancelFlag:
    """A cancellation signal that works across processes: set by creating a file.

    The runtime that watches the report record (its lease heartbeat) sets it; the generator,
    possibly in another process, polls it between stages. `path=None` never fires.
    """

    path: str | None = None

    def set(self) -> None:
        if self.path is not None:
            Path(self.path).touch()

    def is_set(self) -> bool:
        return self.path is not None and os.path.exists(self.path)

    def check(self) -> None:
        """Raise Cancelled when set: call at stage boundaries."""
        if self.is_set():
            raise Cancelled


@dataclass(frozen=True, slots=True)
class RunLimits:
    """What one run may use: set by the runtime from the path and the worker's size
    (reportgrid/limits.py), enforced by the generator (reportgrid/engine/session.py).

    `deadline` is wall-clock epoch seconds, so it means the same in a pool child; None
    (and None memory) leaves DuckDB's own defaults, for tests that call a generator."""

    deadline: float | None = None
    time_limit_seconds: float = 0.0
    memory_limit_bytes: int | None = None
    threads: int = 1
    temp_directory_bytes: int | None = None
    max_input_bytes: int = 1 << 62  # enforced by the runtime's S3 fetch

    def expired(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def check(self) -> None:
        """Raise the report's time-limit failure once its deadline has passed."""
        if self.expired():
            raise time_limit_failure(self.time_limit_seconds)


def time_limit_failure(limit_seconds: float) -> ReportFailure:
    return ReportFailure(
        TIME_LIMIT_EXCEEDED,
        f"the report ran longer than its limit of {limit_seconds:g} s and was stopped; "
        "make it smaller (less input, fewer groups or rows)",
    )


@dataclass(frozen=True, slots=True)
class InputData:
    """A report's input, already on local disk (inline bytes written, S3 downloaded)."""

    format: pb.DataFormat.ValueType
    path: str


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    report_id: str
    params: Mapping[str, Any]
    output_format: pb.OutputFormat.ValueType
    # A private scratch directory the generator may write to; the runtime removes it.
    work_dir: str
    input: InputData | None = None
    cancel: CancelFlag = field(default_factory=CancelFlag)
    limits: RunLimits = field(default_factory=RunLimits)
    # The directory holding work_dir that this process's shared DuckDB database may use
    # (reportgrid/engine/session.py); None: the report gets a database of its own.
    scratch_root: str | None = None

    def check(self) -> None:
        """At stage boundaries: stop when cancelled or past the deadline."""
        self.cancel.check()
        self.limits.check()


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """The uncompressed result bytes; reportgrid.results compresses and stores them."""

    data: bytes
    row_count: int
    content_type: str
