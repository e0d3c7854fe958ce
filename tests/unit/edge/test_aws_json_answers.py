"""Answers the lean AWS JSON client must not trust, from a tiny HTTP server on a real socket:
a body that does not match its `x-amz-crc32`, and malformed HTTP. Each is a `BadAnswer`
(a ConnectionError: retried as a lost answer) on a closed connection, and a claim that
only ever gets such answers ends Unavailable (grpc_edge/aws_json.py, idempotency.py)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.credentials import Credentials

from grpc_edge.aws_json import JSON_1_0, AwsJsonClient, BadAnswer
from grpc_edge.idempotency import PUT_ITEM, ClaimStore
from reportgrid.errors import Unavailable

BODY = b'{"ConsumedCapacity":null}'


def _answer(body: bytes, *, crc: int | None, head: bytes = b"HTTP/1.1 200 OK") -> bytes:
    lines = [head, b"content-length: " + str(len(body)).encode()]
    if crc is not None:
        lines.append(b"x-amz-crc32: " + str(crc).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


ANSWERS = {
    "good": _answer(BODY, crc=zlib.crc32(BODY)),
    "no-crc": _answer(BODY, crc=None),
    "bad-crc": _answer(BODY, crc=zlib.crc32(BODY) ^ 1),
    "crc-not-a-number": _answer(BODY, crc=None).replace(b"\r\n\r\n", b"\r\nx-amz-crc32: x\r\n\r\n"),
    "bad-status": _answer(BODY, crc=None, head=b"HTTP/1.1 OK"),
    "bad-length": b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n" + BODY,
    "bad-chunk": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "huge-head": b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * 70_000 + b"\r\n\r\n",
}


class _Server:
    """Answers every request with `answer` once its head and body are read."""

    def __init__(self) -> None:
        self.answer = ANSWERS["good"]
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def __aenter__(self) -> _Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    async with _Server() as running:
        yield running


def _client(server: _Server) -> AwsJsonClient:
    return AwsJsonClient(
        f"http://127.0.0.1:{server.port}", "us-east-1", "dynamodb", Credentials("AK", "SK")
    )


@pytest.mark.parametrize("answer", ["good", "no-crc"])
async def test_a_sound_answer_is_read_and_its_connection_kept(server: _Server, answer: str) -> None:
    server.answer = ANSWERS[answer]
    client = _client(server)
    for _ in range(2):
        assert await client.call(PUT_ITEM, JSON_1_0, b"{}") == (200, BODY)
    assert client.connections_opened == 1
    await client.close()


@pytest.mark.parametrize("answer", sorted(set(ANSWERS) - {"good", "no-crc"}))
async def test_an_answer_not_to_trust_is_a_bad_answer_on_a_closed_connection(
    server: _Server, answer: str
) -> None:
    client = _client(server)
    server.answer = ANSWERS[answer]
    with pytest.raises(BadAnswer):
        await client.call(PUT_ITEM, JSON_1_0, b"{}")
    # The next call does not reuse that connection
    server.answer = ANSWERS["good"]
    assert await client.call(PUT_ITEM, JSON_1_0, b"{}") == (200, BODY)
    assert client.connections_opened == 2
    await client.close()


class _Judged:
    """aiobotocore's stand-in: the first claim's verdict, then every claim goes lean."""

    async def put_item(self, **_: Any) -> Any:
        return {}


async def test_a_claim_that_only_gets_bad_answers_is_unavailable(server: _Server) -> None:
    server.answer = ANSWERS["bad-crc"]
    lean = _client(server)
    store = ClaimStore(_Judged(), "t", region="us-east-1", lean=lean)  # type: ignore[arg-type]
    await store.claim("acme", "k-0", "f", report_id="rpt_0", created_ms=1, deadline=None)
    with pytest.raises(Unavailable):
        await store.claim("acme", "k-1", "f", report_id="rpt_1", created_ms=1, deadline=None)
    assert lean.connections_opened == 3  # every attempt on a new connection
    await lean.close()
