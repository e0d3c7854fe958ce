"""Result storage: compress a generator's output and keep it inline in the report item
(at most resources.MAX_INLINE_RESULT_BYTES compressed) or in the results bucket under
resources.result_object_key(id). Size, content type and SHA-256 describe the uncompressed
bytes either way.

S3 objects hold the zlib-compressed bytes too (ContentEncoding "deflate", the uncompressed
SHA-256 in the object metadata); `open_result` and `read_result` give back the original.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import resources
from reportgrid.engine.request import GenerateResult
from reportgrid.errors import Unavailable
from reportgrid.records import ResultInfo

COMPRESSION_LEVEL: Final = 6
CONTENT_ENCODING: Final = "deflate"  # zlib stream (RFC 1950), as HTTP's "deflate" means
SHA256_METADATA: Final = "sha256"  # x-amz-meta-sha256 on the object
_CHUNK: Final = 1024 * 1024


def compress(data: bytes) -> bytes:
    return zlib.compress(data, COMPRESSION_LEVEL)


def store_result(
    result: GenerateResult,
    *,
    report_id: str,
    generator_version: int,
    s3: Any,
    bucket: str | None,
    region: str,
) -> ResultInfo:
    """Compress and place the result; the ResultInfo goes into the terminal write."""
    compressed = compress(result.data)
    info = ResultInfo(
        size_bytes=len(result.data),
        content_type=result.content_type,
        sha256=hashlib.sha256(result.data).hexdigest(),
        row_count=result.row_count,
        generator_version=generator_version,
    )
    if len(compressed) <= resources.MAX_INLINE_RESULT_BYTES:
        return ResultInfo(**{**_fields(info), "inline_compressed": compressed})
    if not bucket:
        raise Unavailable("no results bucket is configured for a large result")
    key = resources.result_object_key(report_id)
    try:
        # A retried run writes the same key: the last (identical) write wins.
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=compressed,
            ContentType=result.content_type,
            ContentEncoding=CONTENT_ENCODING,
            Metadata={SHA256_METADATA: info.sha256},
        )
    except (ClientError, BotoCoreError) as err:
        raise Unavailable("the results bucket did not accept the result") from err
    return ResultInfo(**{**_fields(info), "s3_key": key, "s3_region": region})


def _fields(info: ResultInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in info.__slots__}


def open_result(info: ResultInfo, *, s3: Any, bucket: str) -> Iterator[bytes]:
    """The uncompressed result bytes, in chunks (streams an S3 object)."""
    if info.inline_compressed is not None:
        yield zlib.decompress(info.inline_compressed)
        return
    if info.s3_key is None:
        raise ValueError("the result has neither inline bytes nor an S3 key")
    body = s3.get_object(Bucket=bucket, Key=info.s3_key)["Body"]
    inflate = zlib.decompressobj()
    while chunk := body.read(_CHUNK):
        if out := inflate.decompress(chunk):
            yield out
    if tail := inflate.flush():
        yield tail


def read_result(info: ResultInfo, *, s3: Any, bucket: str) -> bytes:
    return b"".join(open_result(info, s3=s3, bucket=bucket))


def versions_of(listing: Mapping[str, Any], key: str) -> list[dict[str, str]]:
    """Every version and delete marker of exactly `key` in a ListObjectVersions reply, in
    DeleteObjects' form. The buckets are versioned: a plain delete would only hide the data
    behind a delete marker."""
    return [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
        if v["Key"] == key
    ]
