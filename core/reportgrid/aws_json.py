"""AWS JSON-protocol calls without botocore's per-call machinery: what the edge's async
client (edge/grpc_edge/aws_json.py) and the workers' sync one (reportgrid/aws_json_sync.py)
share, so there is one definition of the request and of the answers to trust.

Both the awsJson1_1 (Kinesis) and awsJson1_0 (DynamoDB) protocols are a SigV4-signed POST
to `/` with an `X-Amz-Target` header naming the operation; they differ only in the content
type. An answer is the HTTP status with the raw body, checked against its `x-amz-crc32`
when the service sends one (DynamoDB does); an answer that cannot be trusted is a
`BadAnswer`. tests/unit/edge/test_aws_json.py checks the signature against botocore's
SigV4Auth.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import zlib
from typing import Any, Final, Protocol

JSON_1_0: Final = "application/x-amz-json-1.0"  # DynamoDB
JSON_1_1: Final = "application/x-amz-json-1.1"  # Kinesis
# Connections kept idle for reuse: a connection not kept costs a new TCP connection (and
# TLS handshake) for a later call.
DEFAULT_IDLE_CONNECTIONS: Final = 16
# AWS endpoints close connections left idle; one idle this long is not reused
# (reconnecting costs less than a failed call and its retry).
IDLE_SECONDS: Final = 20.0
# The longest answer head read (asyncio's default stream limit, which the edge reads with):
# AWS's heads are a few hundred bytes.
MAX_HEAD_BYTES: Final = 64 * 1024


class FrozenCredentials(Protocol):
    access_key: str
    secret_key: str
    token: str | None


class CredentialSource(Protocol):
    """botocore's Credentials / aiobotocore's AioRefreshableCredentials: a refreshable
    source answers get_frozen_credentials() with an awaitable under aiobotocore, directly
    under botocore."""

    def get_frozen_credentials(self) -> Any: ...


# The headers every call signs, sorted (SigV4 signs them in lowercase, sorted order).
_SIGNED: Final = "content-type;host;x-amz-date;x-amz-target"
_SIGNED_SESSION: Final = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"


class SigV4:
    """AWS Signature Version 4 for a JSON POST to `/` (every call of the JSON protocols)."""

    def __init__(self, region: str, host: str, service: str) -> None:
        self.region = region
        self.host = host
        self.service = service
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, derived key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == date:
            return cached[2]
        key = ("AWS4" + secret).encode()
        for part in (date, self.region, self.service, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        self._key = (secret, date, key)
        return key

    def headers(
        self,
        body: bytes,
        credentials: FrozenCredentials,
        amz_date: str,
        *,
        target: str,
        content_type: str,
    ) -> dict[str, str]:
        """The signed headers of one call (amz_date: YYYYMMDDTHHMMSSZ, UTC)."""
        token = credentials.token
        headers = {
            "content-type": content_type,
            "host": self.host,
            "x-amz-date": amz_date,
            "x-amz-target": target,
        }
        # The canonical request with its headers in sorted order, written out: the names
        # are fixed, so no sort and no join over them per call.
        if token:
            headers["x-amz-security-token"] = token
            signed = _SIGNED_SESSION
            dated = f"x-amz-date:{amz_date}\nx-amz-security-token:{token}\n"
        else:
            signed = _SIGNED
            dated = f"x-amz-date:{amz_date}\n"
        canonical = (
            f"POST\n/\n\ncontent-type:{content_type}\nhost:{self.host}\n{dated}"
            f"x-amz-target:{target}\n\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        )
        date = amz_date[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        key = self._signing_key(credentials.secret_key, date)
        signature = hmac.digest(key, to_sign.encode(), "sha256").hex()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers


def amz_date() -> str:
    """The current time as SigV4 signs it (YYYYMMDDTHHMMSSZ, UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def request_bytes(
    signer: SigV4,
    credentials: FrozenCredentials,
    target: str,
    content_type: str,
    body: bytes,
    *,
    unsigned: str = "",
) -> bytes:
    """The whole HTTP/1.1 request of one call, signed now: head and body. `unsigned`: more
    header lines ("name: value\r\n" each), sent outside the signature (SigV4 signs only
    the headers it lists)."""
    headers = signer.headers(
        body, credentials, amz_date(), target=target, content_type=content_type
    )
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + unsigned
    return f"POST / HTTP/1.1\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body


class BadAnswer(ConnectionError):
    """The answer cannot be trusted: its body does not match the `x-amz-crc32` DynamoDB
    sends (the CRC32 of the body, which botocore and the other SDKs check and retry on:
    botocore/retries/special.py, aws-sdk-go-v2 service/dynamodb/internal/customizations),
    or its HTTP is malformed. The connection is closed. A ConnectionError, so callers treat
    it as any lost answer: retried, and in the end Unavailable (every call made through
    these clients is safe to repeat)."""


def parse_head(head: bytes) -> tuple[int, int, bool, bool, int | None]:
    """(status, content length, keep-alive, chunked, x-amz-crc32 or None) of an answer's
    head; BadAnswer when it is not HTTP."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        keep, chunked = True, False
        crc: int | None = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "x-amz-crc32":
                crc = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
    except (ValueError, IndexError) as err:
        raise BadAnswer("a malformed answer head") from err
    if length < 0:
        raise BadAnswer("a negative content-length")
    return status, length, keep, chunked, crc


def header(head: bytes, name: str) -> str | None:
    """One header's value from an answer's head (`name` in lowercase), or None."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def check_crc(answer: bytes, crc: int | None) -> None:
    """BadAnswer when the body does not match the `x-amz-crc32` sent with it."""
    if crc is not None and zlib.crc32(answer) != crc:
        raise BadAnswer("the answer does not match its x-amz-crc32")


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (chunk extensions ignored); ValueError when
    it is not hex."""
    return int(line.split(b";", 1)[0], 16)


# SQS moved from the Query protocol to JSON keeping its Query error codes: an error answer
# names it in this header, "<query code>;<Sender|Receiver>", and botocore's parser makes
# that the ClientError's code (the JSON __type's name goes to Error.QueryErrorCode).
QUERY_ERROR_HEADER: Final = "x-amzn-query-error"


def error_of(answer: bytes) -> tuple[str, str, dict[str, Any]]:
    """`__type` (without its namespace), message and the whole document of an AWS JSON
    error, as far as they can be read."""
    try:
        doc = json.loads(answer)
    except ValueError:
        return "Unknown", answer[:200].decode(errors="replace"), {}
    if not isinstance(doc, dict):
        return "Unknown", "", {}
    error_type = str(doc.get("__type", "Unknown")).rsplit("#", 1)[-1]
    return error_type, str(doc.get("message") or doc.get("Message") or ""), doc
