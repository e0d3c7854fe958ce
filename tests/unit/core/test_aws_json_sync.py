"""The workers' sync AWS JSON client on a real socket: the request a server receives is
signed as botocore signs it, connections are kept alive and shared by threads, an answer
not to trust is a BadAnswer on a closed connection, a kept-alive connection the server
closed unanswered is sent again once, and a silent server is a TimeoutError."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from reportgrid.aws_json import JSON_1_0, BadAnswer
from reportgrid.aws_json_sync import SyncAwsJsonClient
from tests.unit.core.aws_server import Request, ScriptedServer, answer

BODY = b'{"ConsumedCapacity":null}'
TARGET = "DynamoDB_20120810.PutItem"


def _client(server: ScriptedServer, *, read_timeout: float = 10.0) -> SyncAwsJsonClient:
    credentials = Credentials("AKID", "se/cret", "tok+en")
    return SyncAwsJsonClient(
        server.url, "eu-west-1", "dynamodb", credentials, read_timeout=read_timeout
    )


@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
def test_the_request_received_is_signed_as_botocore_signs_it(token: str | None) -> None:
    with ScriptedServer(lambda _: answer(BODY)) as server:
        client = SyncAwsJsonClient(
            server.url, "eu-west-1", "dynamodb", Credentials("AKID", "se/cret", token)
        )
        assert client.call(TARGET, JSON_1_0, b'{"TableName":"t"}') == (200, BODY)
    got = server.requests[0]
    assert got.head.startswith(b"POST / HTTP/1.1\r\n")
    assert got.body == b'{"TableName":"t"}'
    signed = ("content-type", "host", "x-amz-date", "x-amz-target") + (
        ("x-amz-security-token",) if token else ()
    )
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=got.body,
        headers={name: got.header(name) for name in signed},
    )
    request.context["timestamp"] = got.header("x-amz-date")
    auth = SigV4Auth(Credentials("AKID", "se/cret", token), "dynamodb", "eu-west-1")
    signature = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    assert got.header("authorization").endswith(f"Signature={signature}")
    assert got.header("host") == f"127.0.0.1:{server.port}"
    assert got.header("x-amz-target") == TARGET


def test_connections_are_kept_alive_and_shared_by_threads() -> None:
    with ScriptedServer(lambda _: answer(BODY)) as server:
        client = _client(server)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: client.call(TARGET, JSON_1_0, b"{}"), range(40)))
        client.close()
    assert answers == [(200, BODY)] * 40
    assert 1 <= client.connections_opened <= 4  # one per thread at most, never per call
    assert client.calls == 40


@pytest.mark.parametrize(
    "bad",
    [
        answer(BODY, crc=12345),  # the body does not match its x-amz-crc32
        b"HTTP/1.1 OK\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["bad-crc", "bad-status", "bad-length", "bad-chunk", "huge-head"],
)
def test_an_answer_not_to_trust_is_a_bad_answer_on_a_closed_connection(bad: bytes) -> None:
    replies = iter([bad, answer(BODY)])
    with ScriptedServer(lambda _: next(replies)) as server:
        client = _client(server)
        with pytest.raises(BadAnswer):
            client.call(TARGET, JSON_1_0, b"{}")
        # The next call does not reuse that connection
        assert client.call(TARGET, JSON_1_0, b"{}") == (200, BODY)
    assert client.connections_opened == 2


def test_a_chunked_answer_is_read() -> None:
    chunks = b'3\r\n{"a\r\n3\r\n":1\r\n1\r\n}\r\n0\r\n\r\n'
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks
    with ScriptedServer(lambda _: chunked) as server:
        assert _client(server).call(TARGET, JSON_1_0, b"{}") == (200, b'{"a":1}')


def test_a_kept_alive_connection_closed_unanswered_is_sent_again_once() -> None:
    # Given a server that closes the first connection after one answer, as an endpoint
    # closes an idle connection, without saying so
    def script(request: Request) -> bytes | None:
        first_connection_again = request.connection == 1 and len(server.requests) > 1
        return None if first_connection_again else answer(BODY)

    with ScriptedServer(script) as server:
        client = _client(server)
        assert client.call(TARGET, JSON_1_0, b"{}") == (200, BODY)
        # Then the next call's request is sent again on a new connection, and answered
        assert client.call(TARGET, JSON_1_0, b"{}") == (200, BODY)
    assert client.connections_opened == 2
    assert [r.connection for r in server.requests] == [1, 1, 2]


def test_a_new_connection_closed_unanswered_is_not_sent_again() -> None:
    with ScriptedServer(lambda _: None) as server:
        client = _client(server)
        with pytest.raises(ConnectionError):
            client.call(TARGET, JSON_1_0, b"{}")
    assert len(server.requests) == 1  # a new connection is not resent (nothing stale)


def test_a_server_that_does_not_answer_is_a_timeout() -> None:
    never = threading.Event()

    def silent(_: Request) -> bytes | None:
        never.wait(5)
        return None

    with ScriptedServer(silent) as server:
        client = _client(server, read_timeout=0.2)
        with pytest.raises(TimeoutError):
            client.call(TARGET, JSON_1_0, b"{}")
        never.set()


def test_a_refused_connection_is_a_connection_error() -> None:
    with ScriptedServer(lambda _: None) as server:
        url = server.url
    client = SyncAwsJsonClient(url, "eu-west-1", "dynamodb", Credentials("AK", "SK"))
    with pytest.raises(ConnectionError):
        client.call(TARGET, JSON_1_0, b"{}")
