"""One POST to a URL a tenant chose, without letting that URL reach inside the service.

- The URL is checked again (reportgrid.webhook_policy.url_problem): https only, unless the
  local region allows loopback.
- The host is resolved once and EVERY address it resolves to is vetted
  (webhook_policy.address_problem): one private answer refuses the delivery. The socket is
  then connected to a vetted address itself, never to the name, so a DNS answer that
  changes between the check and the connect (rebinding) cannot redirect it. TLS is
  negotiated with the name (SNI) and the certificate is verified against it, and the Host
  header carries the name.
- Nothing is followed: a 3xx is a failed attempt (http.client never follows redirects).
- Connect within WEBHOOK_CONNECT_TIMEOUT_SECONDS, finish (resolution included) within
  WEBHOOK_TOTAL_TIMEOUT_SECONDS; at most WEBHOOK_MAX_RESPONSE_BYTES of the answer are read
  and thrown away.

The function runs outside the VPC, so no VPC address is reachable anyway; the Lambda
runtime API listens on 127.0.0.1:9001 (AWS_LAMBDA_RUNTIME_API), which the loopback refusal
keeps out of reach. Standard library only (http.client, ssl, socket).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from reportgrid import resources, webhook_policy
from reportgrid.webhook_policy import IpAddress

USER_AGENT: Final = "Reportgrid-Webhooks/1"
# getaddrinfo's signature, injectable so a test can make a name resolve where it likes.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class Refused(Exception):
    """The URL or an address it resolves to is not one a webhook may reach."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave: delivered (2xx), or the reason it was not. `retriable` is
    False when no retry can help (the URL itself is refused)."""

    delivered: bool
    status: int | None = None
    reason: str = ""
    retriable: bool = True


@dataclass(frozen=True, slots=True)
class Limits:
    connect_timeout: float = resources.WEBHOOK_CONNECT_TIMEOUT_SECONDS
    total_timeout: float = resources.WEBHOOK_TOTAL_TIMEOUT_SECONDS
    max_response_bytes: int = resources.WEBHOOK_MAX_RESPONSE_BYTES


def resolve_within(
    resolve: Resolver, host: str, port: int, timeout: float
) -> Sequence[tuple[Any, ...]]:
    """`resolve(host, port)` if it answers within `timeout` s, else ConnectionError.

    getaddrinfo takes no timeout and blocks its thread, so it runs in a daemon thread of
    its own and is waited for only until the delivery's deadline: a slow resolver costs
    one attempt (retried later), not the batch's time. A thread left waiting ends with
    the resolver's own timeout (resolv.conf: 5 s per try) and holds nothing of ours."""
    answer: list[Sequence[tuple[Any, ...]]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(resolve(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as err:
            failure.append(err)

    thread = threading.Thread(target=run, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if failure:
        raise ConnectionError(f"cannot resolve {host}: {failure[0]}")
    if not answer:
        raise ConnectionError(f"resolving {host} took longer than {timeout:.1f} s")
    return answer[0]


def vetted_addresses(
    host: str,
    port: int,
    *,
    allow_loopback: bool,
    resolve: Resolver = socket.getaddrinfo,
    timeout: float = resources.WEBHOOK_TOTAL_TIMEOUT_SECONDS,
) -> list[IpAddress]:
    """Every address `host` resolves to (within `timeout` s), or Refused if any of them
    may not be reached."""
    literal = webhook_policy.ip_literal(host)
    if literal is not None:
        found = [literal]
    else:
        infos = resolve_within(resolve, host, port, timeout)
        found = []
        for info in infos:
            address = webhook_policy.ip_literal(str(info[4][0]).split("%", 1)[0])
            if address is not None and address not in found:
                found.append(address)
    if not found:
        raise ConnectionError(f"{host} resolves to no address")
    for address in found:
        problem = webhook_policy.address_problem(address, allow_loopback=allow_loopback)
        if problem is not None:
            raise Refused(f"{host} resolves to {problem}")
    return found


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_loopback: bool = False,
    limits: Limits = Limits(),
    resolve: Resolver = socket.getaddrinfo,
) -> Outcome:
    """POST `body` to `url` under the rules above; never raises for the receiver's faults."""
    problem = webhook_policy.url_problem(url, allow_loopback=allow_loopback)
    if problem is not None:
        return Outcome(False, reason=f"refused: the URL {problem}", retriable=False)
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme.lower() == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + limits.total_timeout
    try:
        # Resolution counts against the deadline like the rest of the attempt.
        addresses = vetted_addresses(
            host, port, allow_loopback=allow_loopback, resolve=resolve, timeout=_left(deadline)
        )
    except Refused as err:
        # DNS may answer differently later (a moved receiver): retried, never connected.
        return Outcome(False, reason=f"refused: {err}")
    except ConnectionError as err:
        return Outcome(False, reason=str(err))
    try:
        sock = _connect(addresses, port, limits.connect_timeout, deadline)
    except OSError as err:
        return Outcome(False, reason=f"cannot connect to {host}:{port}: {err}")
    try:
        if tls:
            # Verifies the certificate chain and that it names `host`; SNI is `host`.
            context = ssl.create_default_context()
            sock.settimeout(_remaining(deadline))
            sock = context.wrap_socket(sock, server_hostname=host)
        request = _Request(host, port, tls, target, body, headers)
        return _exchange(sock, request, deadline, limits)
    except (OSError, http.client.HTTPException) as err:
        return Outcome(False, reason=f"{type(err).__name__}: {err}")
    finally:
        sock.close()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the delivery ran out of time")
    return left


def _connect(
    addresses: Sequence[IpAddress], port: int, connect_timeout: float, deadline: float
) -> socket.socket:
    """A socket connected to the first vetted address that answers."""
    last: OSError = OSError("no address")
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(connect_timeout, _remaining(deadline)))
            sock.connect((str(address), port))
            return sock
        except OSError as err:
            sock.close()
            last = err
    raise last


@dataclass(frozen=True, slots=True)
class _Request:
    host: str
    port: int
    tls: bool
    target: str
    body: bytes
    headers: Mapping[str, str]


def _exchange(sock: socket.socket, request: _Request, deadline: float, limits: Limits) -> Outcome:
    connection_type = http.client.HTTPSConnection if request.tls else http.client.HTTPConnection
    # http.client sends on `sock` as given (it connects only when it has none): the
    # connection to the vetted address, with the name as the Host header.
    connection = connection_type(request.host, request.port, timeout=limits.total_timeout)
    connection.sock = sock
    sock.settimeout(_remaining(deadline))
    connection.request(
        "POST",
        request.target,
        body=request.body,
        headers={
            **request.headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Connection": "close",
        },
    )
    sock.settimeout(_remaining(deadline))
    response = connection.getresponse()
    status = response.status
    sock.settimeout(_remaining(deadline))
    response.read(limits.max_response_bytes)  # ignored: only the status counts
    if 200 <= status < 300:
        return Outcome(True, status)
    if 300 <= status < 400:
        return Outcome(False, status, f"answered {status} (redirects are not followed)")
    return Outcome(False, status, f"answered {status}")
