"""gRPC messages as HTTP/2 bodies: the 5-byte prefix (compressed flag, big-endian length)
and the serialized protobuf. h2load sends the request body file verbatim, so a body framed
here is exactly what a gRPC client would put on the wire for one unary call.
"""

from __future__ import annotations

import struct
from typing import Final

from google.protobuf.message import Message

PREFIX: Final = struct.Struct(">BI")  # compressed flag (0: identity), message length


def frame(message: Message | bytes) -> bytes:
    payload = message if isinstance(message, bytes) else message.SerializeToString()
    return PREFIX.pack(0, len(payload)) + payload


def unframe(data: bytes) -> bytes:
    """The one message in a length-prefixed body; ValueError if the body is not exactly one
    uncompressed message."""
    if len(data) < PREFIX.size:
        raise ValueError(f"a gRPC frame needs at least {PREFIX.size} bytes, got {len(data)}")
    compressed, length = PREFIX.unpack_from(data)
    if compressed:
        raise ValueError("compressed gRPC frames are not used by the bench")
    if len(data) != PREFIX.size + length:
        raise ValueError(f"frame says {length} message bytes but {len(data) - PREFIX.size} follow")
    return data[PREFIX.size :]


def framed_size(message: Message) -> int:
    """Bytes of DATA a server sends for this reply (prefix + message)."""
    return PREFIX.size + message.ByteSize()
