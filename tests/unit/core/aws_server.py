"""A tiny HTTP/1.1 server on a real socket for the lean AWS JSON clients' tests: each
request is answered by a script (bytes to send, or None to close the connection without
answering), and every request is kept as it arrived."""

from __future__ import annotations

import socket
import socketserver
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass

Script = Callable[["Request"], bytes | None]


@dataclass(frozen=True)
class Request:
    head: bytes  # request line and headers, without the blank line
    body: bytes
    connection: int  # which accepted connection it came on (1, 2, ...)

    def header(self, name: str) -> str:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        raise KeyError(name)


def answer(
    body: bytes, *, status: str = "200 OK", crc: int | None = None, close: bool = False
) -> bytes:
    """An answer as DynamoDB sends it: content-length and x-amz-crc32 of the body."""
    lines = [f"HTTP/1.1 {status}".encode(), b"content-length: " + str(len(body)).encode()]
    lines.append(b"x-amz-crc32: " + str(zlib.crc32(body) if crc is None else crc).encode())
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class ScriptedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Request] = []
        self.connections = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with outer._lock:
                    outer.connections += 1
                    number = outer.connections
                while True:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = self.rfile.readline()
                        if not line:
                            return
                        head += line
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    request = Request(head[:-4], self.rfile.read(length), number)
                    with outer._lock:
                        outer.requests.append(request)
                    reply = outer.script(request)
                    if reply is None:
                        return  # closed unanswered
                    self.wfile.write(reply)
                    self.wfile.flush()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def forward(port: int, request: Request) -> bytes:
    """`request` sent as it is to 127.0.0.1:`port` on a connection of its own, the answer
    read to its end (the target must answer `connection: close`, as the moto server does,
    or with a content-length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.head + b"\r\n\r\n" + request.body)
        file = sock.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = file.readline()
            if not line:
                break
            head += line
        length = next(
            (
                int(h.split(b":", 1)[1])
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length:")
            ),
            None,
        )
        body = file.read(length) if length is not None else file.read()
    # Kept alive towards our client, whatever the target said.
    head = b"\r\n".join(h for h in head.split(b"\r\n") if not h.lower().startswith(b"connection:"))
    return head + body
