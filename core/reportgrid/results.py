"""Result storage: compress a generator's output and keep it inline in the report item
(at most resources.MAX_INLINE_RESULT_BYTES compressed) or in the results bucket under
resources.result_object_key(id). Size, content type and SHA-256 describe the uncompressed
bytes either way.

S3 objects hold the zlib-compressed bytes too (ContentEncoding "deflate", the uncompressed
SHA-256 in the object metadata); the edge's DownloadReport inflates them as it streams.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import resources
from reportgrid.engine.request import GenerateResult
from reportgrid.errors import Unavailable
from reportgrid.records import ResultInfo

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

COMPRESSION_LEVEL: Final = 6
CONTENT_ENCODING: Final = "deflate"  # zlib stream (RFC 1950), as HTTP's "deflate" means
SHA256_METADATA: Final = "sha256"  # x-amz-meta-sha256 on the object


def compress(data: bytes) -> bytes:
    return zlib.compress(data, COMPRESSION_LEVEL)


def store_result(
    result: GenerateResult,
    *,
    report_id: str,
    generator_version: int,
    s3: S3Client,
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


def versions_of(listing: Mapping[str, Any], key: str) -> list[ObjectIdentifierTypeDef]:
    """Every version and delete marker of exactly `key` in a ListObjectVersions reply
    (boto3's or aioboto3's), in DeleteObjects' form. The buckets are versioned: a plain
    delete would only hide the data behind a delete marker."""
    return [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
        if v["Key"] == key
    ]
