"""DownloadReport's stream: the result's bytes, in whatever sizes storage yields them, re-cut
into full chunks (fewer, larger messages), the result's metadata on the first chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Final

from reportgrid.v1 import reports_pb2 as pb

DOWNLOAD_CHUNK_BYTES: Final = 1024 * 1024


async def download_chunks(
    metadata: pb.ResultMetadata,
    pieces: AsyncIterable[bytes],
    *,
    chunk_bytes: int = DOWNLOAD_CHUNK_BYTES,
) -> AsyncIterator[pb.DownloadReportChunk]:
    """Chunks of `chunk_bytes` (the last one shorter), each with its offset; an empty result
    is one empty chunk, so the metadata always arrives."""
    offset = 0
    pending = bytearray()

    def chunk(piece: bytes) -> pb.DownloadReportChunk:
        message = pb.DownloadReportChunk(data=piece, offset=offset)
        if offset == 0:
            message.metadata.CopyFrom(metadata)
        return message

    async for data in pieces:
        pending += data
        while len(pending) >= chunk_bytes:
            piece = bytes(pending[:chunk_bytes])
            del pending[:chunk_bytes]
            yield chunk(piece)
            offset += len(piece)
    if pending or offset == 0:
        yield chunk(bytes(pending))
