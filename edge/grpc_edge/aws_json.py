"""AWS JSON-protocol calls without botocore's per-call machinery: the edge's hot AWS calls
(Kinesis PutRecords for every Submit, DynamoDB PutItem for every keyed Submit's claim).

aiobotocore spends about 0.9 ms of CPU on every call whatever its size (measured: 900 us
for 1 record, 1,040 us for 10, 1,980 us for 100; `docs/PERFORMANCE.md`): request
serialization through the service model, the event hooks, endpoint rules, signing and
aiohttp. `AwsJsonClient` builds the same request by hand: the caller's JSON body, SigV4
with hashlib/hmac (C), one keep-alive HTTP/1.1 connection per call in flight, and answers
the HTTP status with the raw body, checked against its `x-amz-crc32` when the service
sends one (DynamoDB does); an answer it cannot trust is a `BadAnswer`. Both the
awsJson1_1 (Kinesis) and awsJson1_0 (DynamoDB) protocols are a signed POST to `/` with an
`X-Amz-Target` header naming the operation; they differ only in the content type.

It is correct only for what it does: POST to one endpoint, signed with the process's
credentials (botocore's provider chain, refreshed by it: the ECS task role in Fargate).
tests/unit/edge/test_aws_json.py checks the signature against botocore's SigV4Auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import json
import ssl
import time
import zlib
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

JSON_1_0: Final = "application/x-amz-json-1.0"  # DynamoDB
JSON_1_1: Final = "application/x-amz-json-1.1"  # Kinesis
_CALL_TIMEOUT_SECONDS: Final = 10.0  # what the aiobotocore clients' read timeouts are
# As the aiobotocore clients' connect_timeout (clients.py): an unreachable endpoint must
# not hold an in-flight slot for the whole call timeout.
_CONNECT_TIMEOUT_SECONDS: Final = 2.0
# Connections kept idle for reuse: the producer has a few PutRecords in flight, but every
# keyed Submit makes its own claim, so under load hundreds run at once; a connection not
# kept costs a new TCP connection (and TLS handshake) for a later call.
DEFAULT_IDLE_CONNECTIONS: Final = 16
# AWS endpoints close connections left idle; one idle this long is not reused
# (reconnecting costs less than a failed call and its retry).
_IDLE_SECONDS: Final = 20.0


class FrozenCredentials(Protocol):
    access_key: str
    secret_key: str
    token: str | None


class CredentialSource(Protocol):
    """botocore's Credentials / aiobotocore's AioRefreshableCredentials: a refreshable
    source answers get_frozen_credentials() with an awaitable, a static one directly."""

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


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _StaleConnection(Exception):
    """A kept-alive connection was closed by the server before it answered anything."""


class BadAnswer(ConnectionError):
    """The answer cannot be trusted: its body does not match the `x-amz-crc32` DynamoDB
    sends (the CRC32 of the body, which botocore and the other SDKs check and retry on:
    botocore/retries/special.py, aws-sdk-go-v2 service/dynamodb/internal/customizations),
    or its HTTP is malformed. The connection is closed. A ConnectionError, so callers treat
    it as any lost answer: retried, and in the end Unavailable (the call is safe to repeat,
    as `AwsJsonClient.call` says)."""


class AwsJsonClient:
    """Signed JSON POSTs to one AWS endpoint for one service, over kept-alive connections."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        service: str,
        credentials: CredentialSource,
        *,
        idle_connections: int = DEFAULT_IDLE_CONNECTIONS,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        host = self._host if parts.port is None else f"{self._host}:{self._port}"
        self._signer = SigV4(region, host, service)
        self._credentials = credentials
        self._ssl = ssl.create_default_context() if self._tls else None
        self._idle: list[tuple[float, _Connection]] = []  # (idle since, connection)
        self._max_idle = idle_connections
        self.connections_opened = 0  # tests and the bench: is the connection kept alive?

    async def call(
        self, target: str, content_type: str, body: bytes, *, deadline: float | None = None
    ) -> tuple[int, bytes]:
        """POST `body` as operation `target`; the HTTP status and the answer's body.
        TimeoutError after the call timeout, or at `deadline` (time.monotonic()) if sooner:
        one timer per call."""
        frozen = self._credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = self._signer.headers(
            body, frozen, amz_date, target=target, content_type=content_type
        )
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST / HTTP/1.1\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body
        budget = _CALL_TIMEOUT_SECONDS
        if deadline is not None:
            budget = max(0.001, min(budget, deadline - time.monotonic()))
        async with asyncio.timeout(budget):
            try:
                return await self._exchange(request, self._reuse())
            except _StaleConnection:
                # Sent again on a new connection, as HTTP clients do: the server closed the
                # old one without answering. Every caller's call is safe to repeat (a
                # record twice in the log is one report; a conditional write that landed
                # fails its condition and shows the caller its own item).
                return await self._exchange(request, None)

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            since, connection = self._idle.pop()
            if now - since < _IDLE_SECONDS:
                return connection
            connection[1].close()
        return None

    async def _exchange(self, request: bytes, reused: _Connection | None) -> tuple[int, bytes]:
        connection = reused if reused is not None else await self._open()
        reader, writer = connection
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                if reused is not None and not getattr(err, "partial", b""):
                    raise _StaleConnection from err
                raise
            status, length, keep, chunked, crc = _parse_head(head)
            try:
                if chunked:  # AWS sends Content-Length; a proxy in between might not
                    answer = await _read_chunked(reader)
                else:
                    answer = await reader.readexactly(length) if length else b""
            except (ValueError, asyncio.LimitOverrunError) as err:
                raise BadAnswer("a malformed chunked answer") from err
            if crc is not None and zlib.crc32(answer) != crc:
                raise BadAnswer("the answer does not match its x-amz-crc32")
        except asyncio.LimitOverrunError as err:  # a head longer than the stream's limit
            writer.close()
            raise BadAnswer("an answer head too long") from err
        except BaseException:
            writer.close()  # a half-read answer leaves the connection unusable
            raise
        if keep and len(self._idle) < self._max_idle:
            self._idle.append((time.monotonic(), connection))
        else:
            writer.close()
        return status, answer

    async def _open(self) -> _Connection:
        self.connections_opened += 1
        async with asyncio.timeout(_CONNECT_TIMEOUT_SECONDS):
            return await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._tls else None,
            )

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, (_, writer) in idle:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int, bool, bool, int | None]:
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


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are expected
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


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
