"""Stored results as the edge reads and deletes them: this region's results bucket, and the
replica bucket through the peer region's own S3 client (grpc_edge/clients.py).

Reads yield the result's bytes, decompressed and checked against the recorded SHA-256 on
the way, so a damaged object ends the stream with an error instead of wrong bytes. Deletes
remove every version of the object in both buckets.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from grpc_edge.store import bounded
from reportgrid import resources, results
from reportgrid.errors import Internal, NotFound, Unavailable
from reportgrid.records import ResultInfo
from reportgrid.settings import Settings

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import GetObjectOutputTypeDef

logger = Logger(service="reportgrid-edge", child=True)

READ_BYTES: Final = 1024 * 1024  # per read of an S3 body
_WHAT: Final = "result storage"


class ResultStorage:
    def __init__(
        self,
        s3: S3Client,
        *,
        bucket: str | None,
        replica_bucket: str | None = None,
        replica_s3: S3Client | None = None,
        uri_seconds: int = resources.EDGE_DOWNLOAD_URI_SECONDS,
        local: bool = False,
    ) -> None:
        self.s3 = s3
        self.uri_seconds = uri_seconds
        self.local = local  # the local region: URLs point at the moto server over http
        self.bucket = bucket
        self.replica_bucket = replica_bucket
        # The home client only when no peer client exists (the replica then is reached
        # through the home endpoint).
        self.replica_s3 = replica_s3 if replica_s3 is not None else s3

    @classmethod
    def of(cls, settings: Settings, s3: S3Client, replica_s3: S3Client | None) -> ResultStorage:
        return cls(
            s3,
            bucket=settings.results_bucket,
            replica_bucket=settings.replica_results_bucket,
            replica_s3=replica_s3,
            uri_seconds=settings.download_uri_seconds,
            local=settings.aws_endpoint_url is not None,
        )

    def _home_bucket(self) -> str:
        if not self.bucket:
            raise Internal("REPORTGRID_RESULTS_BUCKET is not set but a result lives in S3")
        return self.bucket

    # -- reading -------------------------------------------------------------------------

    async def presign(self, result: ResultInfo) -> tuple[str, int] | None:
        """A presigned GET URL of the result's own object in this region's bucket and when
        it stops working (epoch ms); None for an inline result. Local CPU only (SigV4 query
        signing, ~0.2 ms), no call to AWS.

        A presigned URL is valid no longer than the credentials that signed it: "If you
        created a presigned URL using a temporary credential, the URL expires when the
        credential expires" (docs.aws.amazon.com/AmazonS3/latest/userguide/
        using-presigned-url.html, "Expiration time for presigned URLs"). The ECS task
        role's credentials rotate, so the returned time is the earlier of the lifetime and
        the signing credentials' expiry. They are read after a refresh, before signing:
        the credentials that sign are those or newer ones, never older."""
        if result.inline_compressed is not None or not result.s3_key:
            return None
        now_ms = int(time.time() * 1000)
        expire_ms = now_ms + self.uri_seconds * 1000
        # The signer's own credentials (botocore has no public accessor for them).
        credentials = getattr(getattr(self.s3, "_request_signer", None), "_credentials", None)
        if credentials is not None:
            await credentials.get_frozen_credentials()  # refreshes when near expiry
            expiry = getattr(credentials, "_expiry_time", None)  # refreshable ones only
            if expiry is not None:
                expire_ms = min(expire_ms, int(expiry.timestamp() * 1000))
        seconds = max(1, (expire_ms - now_ms) // 1000)
        url = await self.s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._home_bucket(), "Key": result.s3_key},
            ExpiresIn=seconds,
        )
        # The bucket denies plain http (enforce_ssl); only the local moto server has none.
        if not url.startswith("https://") and not self.local:
            raise Internal("a presigned result URL is not https")
        return url, now_ms + seconds * 1000

    async def read(
        self, result: ResultInfo, report_id: str, deadline: float, *, offset: int = 0
    ) -> AsyncIterator[bytes]:
        """The result's bytes from `offset` on, inline or from S3, verified; NotFound when
        the object is gone, Unavailable when storage cannot be read, Internal when it is
        damaged.

        An S3 object is one zlib stream, so an offset in the result has no byte range in
        the object: the whole object is read and inflated, the first `offset` bytes are
        dropped, and the SHA-256 of all of it is still checked at the end (a ranged GET
        could neither find the offset nor verify the result)."""
        if result.inline_compressed is not None:
            yield zlib.decompress(result.inline_compressed)[offset:]
            return
        if not result.s3_key:
            raise Internal("a SUCCEEDED report has neither inline nor S3 result")
        # Workers store S3 results zlib-compressed (reportgrid.results); one GET streamed
        # through an incremental decompressor.
        inflate = zlib.decompressobj()
        digest = hashlib.sha256()
        try:
            response = await self._get_object(result.s3_key, deadline)
            body = response["Body"]
            try:
                skip = offset
                while packed := await body.read(READ_BYTES):
                    if piece := inflate.decompress(packed):
                        digest.update(piece)
                        if skip >= len(piece):
                            skip -= len(piece)
                            continue
                        yield piece[skip:]
                        skip = 0
            finally:
                body.close()
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "error")
            if code in ("NoSuchKey", "404"):
                raise NotFound("report", report_id) from None
            raise Unavailable(f"the stored result could not be read ({code}); retry") from None
        except zlib.error:
            raise Internal(f"stored result of {report_id} is not a zlib stream") from None
        if tail := inflate.flush():
            digest.update(tail)
            if skip < len(tail):
                yield tail[skip:]
        if digest.hexdigest() != result.sha256:
            raise Internal(f"stored result of {report_id} does not match its recorded sha256")

    async def _get_object(self, key: str, deadline: float) -> GetObjectOutputTypeDef:
        """GetObject from this region's bucket; when that fails (the bucket unreachable, or
        the object written by the peer region and not replicated yet), from the replica
        bucket, through the peer region's client. The last failure is raised."""
        sources = [(self._home_bucket(), self.s3)]
        if self.replica_bucket:
            sources.append((self.replica_bucket, self.replica_s3))
        for index, (bucket, s3) in enumerate(sources):
            last = index == len(sources) - 1
            # The home bucket gets half the time left, so a hung region leaves the rest.
            until = deadline if last else time.monotonic() + (deadline - time.monotonic()) / 2
            try:
                return await bounded(s3.get_object(Bucket=bucket, Key=key), until, _WHAT)
            except (ClientError, Unavailable):
                if last:
                    raise
            except BotoCoreError:  # no answer at all (connection refused, endpoint down)
                if last:
                    raise Unavailable("result storage could not be reached; retry") from None
        raise AssertionError("unreachable")

    # -- deleting ------------------------------------------------------------------------

    async def delete(self, key: str, deadline: float) -> None:
        """Delete every version of the object, in this region's bucket and the replica: the
        buckets are versioned (a plain delete would only hide the data behind a delete
        marker), and S3 replication does not carry version deletes."""
        await self._delete_versions(self._home_bucket(), key, deadline, self.s3)
        if self.replica_bucket:
            # Best effort: with the peer region lost, Delete must still work here (its copy
            # then stays; docs/MULTI_REGION.md, "what remains").
            try:
                await self._delete_versions(self.replica_bucket, key, deadline, self.replica_s3)
            except Unavailable:
                logger.warning("could not delete the replica of a deleted report's result")

    @staticmethod
    async def _delete_versions(bucket: str, key: str, deadline: float, s3: S3Client) -> None:
        try:
            listing = await bounded(
                s3.list_object_versions(Bucket=bucket, Prefix=key), deadline, _WHAT
            )
            versions = results.versions_of(listing, key)
            if versions:
                await bounded(
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True}),
                    deadline,
                    _WHAT,
                )
        except (ClientError, BotoCoreError) as err:
            logger.warning(
                "result delete failed", extra={"code": _error_code(err), "bucket": bucket}
            )
            raise Unavailable("the stored result could not be deleted; retry") from None


def _error_code(err: ClientError | BotoCoreError) -> str:
    """AWS's error code for the logs; a connection failure has none, only its class."""
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return type(err).__name__
