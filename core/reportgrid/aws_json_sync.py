"""The workers' AWS JSON client: the edge's lean calls (reportgrid/aws_json.py: the same
request, signature and checks of an answer) over blocking sockets, for threads.

boto3 spends ~1.5 ms of CPU on a small DynamoDB call (docs/PERFORMANCE.md, issue 22):
request serialization through the service model, the event hooks, endpoint rules,
signing, urllib3 and parsing. This client does a signed POST on a kept-alive connection
and hands back the HTTP status with the raw body. Connections are checked out by one
thread at a time from a pool kept for the process's life; TLS is verified (the caller's
context: the workers pass botocore's CA bundle, the one boto3 trusts). Every failure to
get an answer is a ConnectionError or a TimeoutError (botocore's ConnectionError and
ReadTimeoutError for the same: callers map them as they map boto3's).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import ssl
import threading
import time
from typing import BinaryIO, Final, NamedTuple
from urllib.parse import urlsplit

from reportgrid.aws_json import (
    DEFAULT_IDLE_CONNECTIONS,
    IDLE_SECONDS,
    MAX_HEAD_BYTES,
    QUERY_ERROR_HEADER,
    BadAnswer,
    CredentialSource,
    SigV4,
    check_crc,
    chunk_size,
    header,
    parse_head,
    request_bytes,
)

# As the workers' boto3 clients (functions/clients.py): a stuck call fails as a transient
# error instead of eating the Lambda's or the lease's time. The read timeout bounds each
# wait for bytes, as botocore's read_timeout does.
CONNECT_TIMEOUT_SECONDS: Final = 3.0
READ_TIMEOUT_SECONDS: Final = 10.0


class Answer(NamedTuple):
    status: int
    body: bytes
    query_error: str | None = None  # an error's x-amzn-query-error header (SQS), if any


class _StaleConnection(Exception):
    """A kept-alive connection was closed by the server before it answered anything."""


class _Connection:
    __slots__ = ("file", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file: BinaryIO = sock.makefile("rb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class SyncAwsJsonClient:
    """Signed JSON POSTs to one AWS endpoint for one service, over kept-alive connections
    shared by the threads that call it."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        service: str,
        credentials: CredentialSource,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_connections: int = DEFAULT_IDLE_CONNECTIONS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`headers`: sent with every call, unsigned (e.g. SQS's x-amzn-query-mode)."""
        parts = urlsplit(endpoint_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        host = self._host if parts.port is None else f"{self._host}:{self._port}"
        self._signer = SigV4(region, host, service)
        self._credentials = credentials
        self._unsigned = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._ssl = (ssl_context or ssl.create_default_context()) if self._tls else None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[tuple[float, _Connection]] = []  # (idle since, connection)
        self._max_idle = idle_connections
        self._lock = threading.Lock()
        self.connections_opened = 0  # tests and the bench: is the connection kept alive?
        # The bench and tests count AWS calls, per X-Amz-Target.
        self.calls_by_target: collections.Counter[str] = collections.Counter()

    @property
    def calls(self) -> int:
        return sum(self.calls_by_target.values())

    @property
    def endpoint(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._signer.host}"

    def call(self, target: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` as operation `target`; the HTTP status and the answer's body.
        ConnectionError (BadAnswer among them) or TimeoutError when there is no answer to
        trust."""
        answer = self.answer(target, content_type, body)
        return answer.status, answer.body

    def answer(self, target: str, content_type: str, body: bytes) -> Answer:
        """`call`, with an error answer's x-amzn-query-error header."""
        # A refreshable source refreshes here when its expiry is near (botocore's lock).
        frozen = self._credentials.get_frozen_credentials()
        request = request_bytes(
            self._signer, frozen, target, content_type, body, unsigned=self._unsigned
        )
        with self._lock:
            self.calls_by_target[target] += 1
        try:
            return self._exchange(request, self._reuse())
        except _StaleConnection:
            # Sent again on a new connection, as HTTP clients do: the server closed the
            # old one without answering. Every call made through this client is safe to
            # repeat (a conditional write that landed fails its condition, and the caller
            # recognises its own write).
            return self._exchange(request, None)

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                since, connection = self._idle.pop()
                if now - since < IDLE_SECONDS:
                    return connection
                connection.close()
        return None

    def _exchange(self, request: bytes, reused: _Connection | None) -> Answer:
        connection = reused if reused is not None else self._open()
        try:
            try:
                try:
                    connection.sock.sendall(request)
                except ConnectionError as err:  # reset, broken pipe: nothing was answered
                    raise _NothingRead from err
                head = _read_head(connection.file)
            except _NothingRead as err:
                if reused is not None:
                    raise _StaleConnection from err
                raise ConnectionError("the endpoint closed the connection unanswered") from err
            status, length, keep, chunked, crc = parse_head(head)
            if chunked:  # AWS sends Content-Length; a proxy in between might not
                answer = _read_chunked(connection.file)
            else:
                answer = _read_exactly(connection.file, length)
            check_crc(answer, crc)
            query_error = header(head, QUERY_ERROR_HEADER) if status != 200 else None
        except BaseException as err:
            connection.close()  # a half-read answer leaves the connection unusable
            if isinstance(err, OSError) and not isinstance(err, ConnectionError | TimeoutError):
                raise ConnectionError(f"no answer: {err}") from err  # e.g. ssl.SSLError
            raise
        with self._lock:
            if keep and len(self._idle) < self._max_idle:
                self._idle.append((time.monotonic(), connection))
                return Answer(status, answer, query_error)
        connection.close()
        return Answer(status, answer, query_error)

    def _open(self) -> _Connection:
        with self._lock:
            self.connections_opened += 1
        try:
            sock = socket.create_connection((self._host, self._port), self._connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._ssl is not None:  # the handshake, under the connect timeout
                    sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
                sock.settimeout(self._read_timeout)
            except BaseException:
                sock.close()
                raise
        except (ConnectionError, TimeoutError):
            raise
        except OSError as err:  # unreachable, a name that does not resolve, a bad certificate
            raise ConnectionError(f"could not connect to {self.endpoint}: {err}") from err
        return _Connection(sock)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, connection in idle:
            connection.close()


class _NothingRead(Exception):
    """The connection ended before the first byte of an answer."""


def _read_head(file: BinaryIO) -> bytes:
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = file.readline(MAX_HEAD_BYTES + 1)
        except ConnectionError as err:
            if not lines:
                raise _NothingRead from err
            raise
        if not line:
            if not lines:
                raise _NothingRead
            raise ConnectionError("the connection ended inside the answer's head")
        size += len(line)
        if size > MAX_HEAD_BYTES:
            raise BadAnswer("an answer head too long")
        if line in {b"\r\n", b"\n"}:
            return b"".join(lines)
        lines.append(line)


def _read_exactly(file: BinaryIO, length: int) -> bytes:
    if not length:
        return b""
    data = file.read(length)
    if len(data) != length:
        raise ConnectionError("the connection ended inside the answer")
    return data


def _read_chunked(file: BinaryIO) -> bytes:
    parts: list[bytes] = []
    try:
        while True:
            line = file.readline(MAX_HEAD_BYTES + 1)
            if not line.endswith(b"\n"):
                raise BadAnswer("a malformed chunked answer")
            size = chunk_size(line)
            if size == 0:
                file.readline(MAX_HEAD_BYTES + 1)  # no trailers are expected
                return b"".join(parts)
            parts.append(_read_exactly(file, size))
            _read_exactly(file, 2)
    except ValueError as err:
        raise BadAnswer("a malformed chunked answer") from err
