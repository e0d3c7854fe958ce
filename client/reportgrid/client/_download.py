"""Where a download's bytes go, checked against the size and SHA-256 the server reported.
Plain file I/O, shared by both clients (chunks are at most 1 MiB, so a write is short).
Also the fetch of a presigned result URL (ResultMetadata.download_uri): plain HTTP(S) with
urllib, no credentials sent, the zlib body inflated into the same sink."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
import zlib
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

    def write(self, data: bytes) -> None:
        """The next bytes of the result (from a URL: no chunk offsets to check)."""
        self._digest.update(data)
        self.stream.write(data)
        self.size += len(data)

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


# Per socket read of a URL download; the whole download is bounded by its own deadline.
URI_READ_TIMEOUT_SECONDS = 30.0
URI_READ_BYTES = 1024 * 1024
# A URL this close to its expiry is not worth starting on.
URI_EXPIRY_MARGIN_SECONDS = 5.0


class UriFailed(Exception):
    """The URL did not deliver the whole result (expired, 403, network, truncated); the
    caller streams the rest through DownloadReport from sink.size."""


def usable_uri(meta: pb.ResultMetadata, *, allow_http: bool) -> str | None:
    """The metadata's URL when it can be tried: https (http only when the gRPC channel is
    plaintext too, the local region), not about to expire."""
    uri = meta.download_uri
    if not uri or not (uri.startswith("https://") or (allow_http and uri.startswith("http://"))):
        return None
    if meta.HasField("download_uri_expire_time"):
        left = meta.download_uri_expire_time.ToMilliseconds() / 1000 - time.time()
        if left < URI_EXPIRY_MARGIN_SECONDS:
            return None
    return uri


def fetch_uri(uri: str, sink: DownloadSink, timeout: float) -> None:
    """GET the URL into the sink, inflating a `Content-Encoding: deflate` body. No
    Authorization header: the URL carries its own. Raises UriFailed on any failure."""
    deadline = time.monotonic() + timeout
    # No redirect handler beyond urllib's default; a plain Request with no credentials.
    request = urllib.request.Request(uri, method="GET")  # noqa: S310 -- scheme checked
    try:
        with urllib.request.urlopen(  # noqa: S310 -- scheme checked by usable_uri
            request, timeout=min(timeout, URI_READ_TIMEOUT_SECONDS)
        ) as response:
            encoding = (response.headers.get("Content-Encoding") or "identity").lower()
            if encoding not in ("deflate", "identity"):
                raise UriFailed(f"unexpected Content-Encoding {encoding!r}")
            inflate = zlib.decompressobj() if encoding == "deflate" else None
            while packed := response.read(URI_READ_BYTES):
                if time.monotonic() > deadline:
                    raise UriFailed("the URL download ran out of time")
                sink.write(inflate.decompress(packed) if inflate else packed)
            if inflate is not None:
                sink.write(inflate.flush())
                if not inflate.eof:
                    raise UriFailed("the URL's body ended before the result did")
    except (urllib.error.URLError, OSError, zlib.error, ValueError) as err:
        raise UriFailed(str(err)) from None


class AsyncUriDownload:
    """fetch_uri off the event loop (the async client's flavour of UriDownload)."""

    @staticmethod
    async def run(uri: str, sink: DownloadSink, seconds: float) -> None:
        await asyncio.to_thread(fetch_uri, uri, sink, seconds)


class UriDownload:
    """fetch_uri in the caller's thread (the blocking client's flavour)."""

    @staticmethod
    def run(uri: str, sink: DownloadSink, seconds: float) -> None:
        fetch_uri(uri, sink, seconds)
