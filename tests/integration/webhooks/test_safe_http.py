"""One webhook attempt over real loopback sockets: signed and verified with the SDK's
helper, 2xx only, redirects not followed, and private, loopback and metadata targets
refused before any connection (a resolver is injected to make a name resolve to them)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.webhooks import safe_http
from reportgrid.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, sign, verify

SECRET = "whsec_" + "ab" * 32


class Receiver(http.server.BaseHTTPRequestHandler):
    status = 204
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((dict(self.headers), body))
        self.send_response(self.status)
        if self.status == 302:
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("R", (Receiver,), {"got": [], "status": 204})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def _post(url: str, **kwargs: Any) -> safe_http.Outcome:
    body = b'{"event_id":"e1","state":"SUCCEEDED"}'
    headers = {SIGNATURE_HEADER: sign(body, [SECRET], _now()), EVENT_ID_HEADER: "e1"}
    return safe_http.post(url, body, headers, **kwargs)


def _now() -> int:
    import time

    return int(time.time())


def test_a_loopback_receiver_gets_one_verified_delivery_when_allowed(receiver: Any) -> None:
    url, handler = receiver
    outcome = _post(url, allow_loopback=True)
    assert outcome.delivered
    assert outcome.status == 204
    ((headers, body),) = handler.got
    assert verify(body, headers[SIGNATURE_HEADER], SECRET)["state"] == "SUCCEEDED"
    assert headers[EVENT_ID_HEADER] == "e1"
    with pytest.raises(ValueError, match="no signature matches"):
        verify(body, headers[SIGNATURE_HEADER], "whsec_other")


def test_a_redirect_is_a_failure_and_is_not_followed(receiver: Any) -> None:
    url, handler = receiver
    handler.status = 302
    outcome = _post(url, allow_loopback=True)
    assert not outcome.delivered
    assert outcome.status == 302
    assert len(handler.got) == 1  # nothing went to the Location


def test_a_500_is_a_retriable_failure(receiver: Any) -> None:
    url, handler = receiver
    handler.status = 500
    outcome = _post(url, allow_loopback=True)
    assert not outcome.delivered
    assert outcome.retriable
    assert outcome.status == 500


@pytest.mark.parametrize(
    "url",
    ["https://10.0.0.1/h", "https://169.254.169.254/latest", "https://[::1]/h", "http://x.test/"],
)
def test_private_metadata_loopback_and_plain_http_urls_are_refused(url: str) -> None:
    outcome = _post(url)
    assert not outcome.delivered
    assert not outcome.retriable
    assert outcome.reason.startswith("refused")


def test_a_name_resolving_to_loopback_is_refused_without_connecting(receiver: Any) -> None:
    url, handler = receiver
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    def to_loopback(host: str, port_: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port_))]

    def mixed(host: str, port_: int, **_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port_)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port_)),
        ]

    name_url = f"https://hooks.example.com:{port}/hook"
    outcome = _post(name_url, resolve=to_loopback)
    assert not outcome.delivered
    assert "loopback" in outcome.reason
    # One private answer among public ones refuses the whole delivery.
    outcome = _post(name_url, resolve=mixed)
    assert not outcome.delivered
    assert "private" in outcome.reason
    assert handler.got == []


def test_a_slow_resolver_costs_the_attempt_not_more_than_its_deadline(receiver: Any) -> None:
    # Given a name whose resolver answers (the receiver's own address) only after 2 s
    url, handler = receiver
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    def slow(host: str, port_: int, **_: Any) -> list[tuple[Any, ...]]:
        time.sleep(2.0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port_))]

    # When one attempt may take 0.5 s in all
    started = time.monotonic()
    outcome = _post(
        f"http://localhost:{port}/hook",
        allow_loopback=True,
        resolve=slow,
        limits=safe_http.Limits(total_timeout=0.5),
    )
    # Then it fails, retriable, at its deadline: resolution is inside it
    assert time.monotonic() - started < 1.5
    assert not outcome.delivered
    assert outcome.retriable
    assert "took longer than" in outcome.reason
    assert handler.got == []
