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

The request, the signature and the checks of an answer are core's (reportgrid/aws_json.py,
shared with the workers' sync client); this module is the asyncio transport. It is
correct only for what it does: POST to one endpoint, signed with the process's
credentials (botocore's provider chain, refreshed by it: the ECS task role in Fargate).
tests/unit/edge/test_aws_json.py checks the signature against botocore's SigV4Auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import time
from typing import Final
from urllib.parse import urlsplit

# The pure parts live in core, shared with the workers' sync client; re-exported here so
# the edge's imports stay `from grpc_edge.aws_json import ...`.
from reportgrid.aws_json import (
    DEFAULT_IDLE_CONNECTIONS,
    IDLE_SECONDS,
    JSON_1_0,
    JSON_1_1,
    BadAnswer,
    CredentialSource,
    FrozenCredentials,
    SigV4,
    check_crc,
    chunk_size,
    error_of,
    parse_head,
    request_bytes,
)

__all__ = [
    "DEFAULT_IDLE_CONNECTIONS",
    "JSON_1_0",
    "JSON_1_1",
    "AwsJsonClient",
    "BadAnswer",
    "CredentialSource",
    "FrozenCredentials",
    "SigV4",
    "error_of",
]

_CALL_TIMEOUT_SECONDS: Final = 10.0  # what the aiobotocore clients' read timeouts are
# As the aiobotocore clients' connect_timeout (clients.py): an unreachable endpoint must
# not hold an in-flight slot for the whole call timeout.
_CONNECT_TIMEOUT_SECONDS: Final = 2.0


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _StaleConnection(Exception):
    """A kept-alive connection was closed by the server before it answered anything."""


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
        request = request_bytes(self._signer, frozen, target, content_type, body)
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
            if now - since < IDLE_SECONDS:
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
            status, length, keep, chunked, crc = parse_head(head)
            try:
                if chunked:  # AWS sends Content-Length; a proxy in between might not
                    answer = await _read_chunked(reader)
                else:
                    answer = await reader.readexactly(length) if length else b""
            except (ValueError, asyncio.LimitOverrunError) as err:
                raise BadAnswer("a malformed chunked answer") from err
            check_crc(answer, crc)
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


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = chunk_size(await reader.readuntil(b"\r\n"))
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are expected
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
