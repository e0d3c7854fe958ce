"""PutRecords without botocore's per-call machinery: the producer's one hot AWS call.

aiobotocore spends about 0.9 ms of CPU on every call whatever its size (measured: 900 us
for 1 record, 1,040 us for 10, 1,980 us for 100; `docs/PERFORMANCE.md`): request
serialization through the service model, the event hooks, endpoint rules, signing and
aiohttp. At a few thousand Submits/s with small batches that is most of what separates
the edge from the null server. This writer builds the same request by hand: the JSON body
as text, SigV4 with hashlib/hmac (C), one keep-alive HTTP/1.1 connection per call in
flight, the same answer (the parsed JSON PutRecords response) or an error.

It is correct only for what it does: PutRecords to one endpoint, signed with the process's
credentials (botocore's provider chain, refreshed by it: the ECS task role in Fargate). The
edge's other Kinesis calls (DescribeStreamSummary for health) still go through the
aiobotocore client. tests/unit/edge/test_kinesis_writer.py checks the signature against
botocore's SigV4Auth.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import json
import ssl
import time
from collections.abc import Sequence
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

TARGET: Final = "Kinesis_20131202.PutRecords"
CONTENT_TYPE: Final = "application/x-amz-json-1.1"
_SERVICE: Final = "kinesis"
_CALL_TIMEOUT_SECONDS: Final = 10.0  # what the aiobotocore client's read timeout was
# As the aiobotocore client's connect_timeout (clients.py): an unreachable endpoint must not
# hold an in-flight slot for the whole call timeout.
_CONNECT_TIMEOUT_SECONDS: Final = 2.0
_IDLE_CONNECTIONS: Final = 16
# Kinesis closes connections left idle; one idle this long is not reused (reconnecting
# costs less than a failed call and its retry).
_IDLE_SECONDS: Final = 20.0


class FrozenCredentials(Protocol):
    access_key: str
    secret_key: str
    token: str | None


class CredentialSource(Protocol):
    """botocore's Credentials / aiobotocore's AioRefreshableCredentials: a refreshable
    source answers get_frozen_credentials() with an awaitable, a static one directly."""

    def get_frozen_credentials(self) -> Any: ...


class PutRecordsCaller(Protocol):
    async def put_records(self, *, StreamName: str, Records: Sequence[Any]) -> Any: ...


class KinesisCallError(Exception):
    """The whole PutRecords call failed (HTTP status other than 200): every record of it
    is retried by the producer."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"PutRecords failed: HTTP {status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type


def put_records_body(stream_name: str, records: Sequence[dict[str, Any]]) -> bytes:
    """The JSON the Kinesis API takes (Data as base64), built as text: the producer builds
    every record itself, so there is nothing to validate."""
    items = ",".join(
        '{"Data":"'
        + base64.b64encode(r["Data"]).decode("ascii")
        + '","PartitionKey":'
        + json.dumps(r["PartitionKey"])
        + "}"
        for r in records
    )
    return ('{"StreamName":' + json.dumps(stream_name) + ',"Records":[' + items + "]}").encode()


class SigV4:
    """AWS Signature Version 4 for a JSON POST to `/` (what every Kinesis call is)."""

    def __init__(self, region: str, host: str) -> None:
        self.region = region
        self.host = host
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, derived key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == date:
            return cached[2]
        key = ("AWS4" + secret).encode()
        for part in (date, self.region, _SERVICE, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        self._key = (secret, date, key)
        return key

    def headers(self, body: bytes, credentials: FrozenCredentials, amz_date: str) -> dict[str, str]:
        """The signed headers of one call (amz_date: YYYYMMDDTHHMMSSZ, UTC)."""
        headers = {
            "content-type": CONTENT_TYPE,
            "host": self.host,
            "x-amz-date": amz_date,
            "x-amz-target": TARGET,
        }
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            (
                "POST",
                "/",
                "",
                "".join(f"{name}:{headers[name]}\n" for name in names),
                signed,
                hashlib.sha256(body).hexdigest(),
            )
        )
        date = amz_date[:8]
        scope = f"{date}/{self.region}/{_SERVICE}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        key = self._signing_key(credentials.secret_key, date)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _StaleConnection(Exception):
    """A kept-alive connection was closed by the server before it answered anything."""


class KinesisWriter:
    """`put_records(StreamName=..., Records=[...])` with the aiobotocore client's call shape
    and answer, so the producer (and tests' fault-injecting wrappers) treat both alike."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        *,
        first_via: PutRecordsCaller | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        # Calls go through `first_via` (the aiobotocore client) until one succeeds. AWS
        # judges every signed request itself, but the local region's IAM emulation is a
        # botocore hook (reportgrid/local/iam/hook.py) that this writer never passes: a
        # first call through botocore gets the same verdict, and with it denied every
        # call stays on botocore, so a missing grant fails locally as it would in AWS.
        self._first_via = first_via
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        default_port = parts.port is None
        self._signer = SigV4(region, self._host if default_port else f"{self._host}:{self._port}")
        self._credentials = credentials
        self._ssl = ssl.create_default_context() if self._tls else None
        self._idle: list[tuple[float, _Connection]] = []  # (idle since, connection)
        self.connections_opened = 0  # tests and the bench: is the connection kept alive?

    async def put_records(self, *, StreamName: str, Records: Sequence[dict[str, Any]]) -> Any:
        if self._first_via is not None:
            answer = await self._first_via.put_records(StreamName=StreamName, Records=Records)
            self._first_via = None
            return answer
        body = put_records_body(StreamName, Records)
        frozen = self._credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = self._signer.headers(body, frozen, amz_date)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST / HTTP/1.1\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            try:
                status, answer = await self._exchange(request, self._reuse())
            except _StaleConnection:
                # Sent again on a new connection, as HTTP clients do: the server closed the
                # old one without answering. Were it read after all, the record would be
                # in the log twice, which the workers' conditional writes make one report.
                status, answer = await self._exchange(request, None)
        if status != 200:
            error_type, message = _error_of(answer)
            raise KinesisCallError(status, error_type, message)
        return json.loads(answer)

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
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            keep, chunked = True, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    keep = False
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:  # AWS sends Content-Length; a proxy in between might not
                answer = await _read_chunked(reader)
            else:
                answer = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()  # a half-read answer leaves the connection unusable
            raise
        if keep and len(self._idle) < _IDLE_CONNECTIONS:
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
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are expected
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _error_of(answer: bytes) -> tuple[str, str]:
    """`__type` and message of an AWS JSON error, as far as they can be read."""
    try:
        doc = json.loads(answer)
    except ValueError:
        return "Unknown", answer[:200].decode(errors="replace")
    if not isinstance(doc, dict):
        return "Unknown", ""
    error_type = str(doc.get("__type", "Unknown")).rsplit("#", 1)[-1]
    return error_type, str(doc.get("message") or doc.get("Message") or "")
