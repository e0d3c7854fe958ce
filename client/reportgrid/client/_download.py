"""Where a download's bytes go, checked against the size and SHA-256 the server reported.
Plain file I/O, shared by both clients (chunks are at most 1 MiB, so a write is short)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO

from reportgrid import errors
from reportgrid.v1 import reports_pb2 as pb


class ChecksumMismatch(errors.ReportgridError):
    """Downloaded bytes do not match the size or SHA-256 the server reported; nothing was
    written to the destination file."""


class DownloadSink:
    """A temporary file beside the destination (renamed into place only after the checksum
    matches) or a caller's binary stream."""

    def __init__(self, destination: str | os.PathLike[str] | IO[bytes]) -> None:
        self._path: Path | None = None
        self._tmp: Path | None = None
        if isinstance(destination, str | os.PathLike):
            self._path = Path(destination)
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=self._path.parent)
            self._tmp = Path(tmp)
            self.stream: IO[bytes] = os.fdopen(fd, "wb")
        else:
            self.stream = destination
        self._digest = hashlib.sha256()
        self.size = 0
        self.metadata: pb.ResultMetadata | None = None

    def add(self, chunk: pb.DownloadReportChunk) -> None:
        if chunk.HasField("metadata"):
            self.metadata = chunk.metadata
        if chunk.offset != self.size:
            raise ChecksumMismatch(
                f"download: expected offset {self.size}, got {chunk.offset}; retry the download"
            )
        self._digest.update(chunk.data)
        self.stream.write(chunk.data)
        self.size += len(chunk.data)

    def finish(self, report_id: str) -> pb.ResultMetadata:
        """The result's metadata once size and SHA-256 match; then the file is in place."""
        meta = self.metadata
        try:
            if meta is None:
                raise ChecksumMismatch(f"download of {report_id}: the server sent no metadata")
            if self.size != meta.size_bytes or self._digest.hexdigest() != meta.sha256:
                raise ChecksumMismatch(
                    f"download of {report_id}: got {self.size} bytes with sha256 "
                    f"{self._digest.hexdigest()[:12]}..., expected {meta.size_bytes} bytes "
                    f"with {meta.sha256[:12]}...; retry the download"
                )
        except BaseException:
            self.abort()
            raise
        if self._path is not None and self._tmp is not None:
            self.stream.close()
            self._tmp.replace(self._path)
        return meta

    def abort(self) -> None:
        """Drop the temporary file (a caller's stream is left as it is)."""
        if self._tmp is not None:
            self.stream.close()
            self._tmp.unlink(missing_ok=True)
