"""DownloadReport's stream: the result's bytes, in whatever sizes storage yields them, re-cut
into full chunks (fewer, larger messages), the result's metadata on the first chunk; from
DownloadReportRequest.read_offset on (google.bytestream's resume), or, with prefer_uri and a
result in S3, one chunk whose metadata carries a presigned URL instead of the bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from reportgrid.errors import FieldViolation, OutOfRange
from reportgrid.v1 import reports_pb2 as pb

DOWNLOAD_CHUNK_BYTES: Final = 1024 * 1024


async def download_chunks(
    metadata: pb.ResultMetadata,
    pieces: AsyncIterable[bytes],
    *,
    chunk_bytes: int = DOWNLOAD_CHUNK_BYTES,
    start: int = 0,
) -> AsyncIterator[pb.DownloadReportChunk]:
    """Chunks of `chunk_bytes` (the last one shorter), each with its absolute offset (the
    pieces begin at `start`); nothing to send is one empty chunk, so the metadata always
    arrives."""
    offset = start
    pending = bytearray()

    def chunk(piece: bytes) -> pb.DownloadReportChunk:
        message = pb.DownloadReportChunk(data=piece, offset=offset)
        if offset == start:
            message.metadata.CopyFrom(metadata)
        return message

    async for data in pieces:
        pending += data
        while len(pending) >= chunk_bytes:
            piece = bytes(pending[:chunk_bytes])
            del pending[:chunk_bytes]
            yield chunk(piece)
            offset += len(piece)
    if pending or offset == start:
        yield chunk(bytes(pending))


def check_read_offset(read_offset: int, size: int) -> None:
    """google.bytestream: "A read_offset that is negative or greater than the size of the
    resource will cause an OUT_OF_RANGE error" (google/bytestream/bytestream.proto)."""
    if read_offset < 0 or read_offset > size:
        raise OutOfRange(
            FieldViolation(
                "read_offset",
                f"must be between 0 and the result's size, {size} bytes; got {read_offset}",
            )
        )


def set_download_uri(metadata: pb.ResultMetadata, uri: str, expire_ms: int) -> None:
    metadata.download_uri = uri
    expire = Timestamp()
    expire.FromMilliseconds(expire_ms)
    metadata.download_uri_expire_time.CopyFrom(expire)


def uri_chunk(metadata: pb.ResultMetadata, offset: int) -> pb.DownloadReportChunk:
    """prefer_uri's answer: the metadata with its URL, no data."""
    return pb.DownloadReportChunk(metadata=metadata, offset=offset)
