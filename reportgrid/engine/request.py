"""What a generator is given and what it returns.

Both are plain, picklable values: the queue worker runs generators in a process pool, so a
request crosses a process boundary, and so does the cancellation check (a file flag).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgrid.engine.exceptions import Cancelled
from reportgrid.v1 import reports_pb2 as pb


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


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """The uncompressed result bytes; reportgrid.results compresses and stores them."""

    data: bytes
    row_count: int
    content_type: str
