"""The edge mints ids with its own table-driven base32 (reportgrid/ids.py): the text must
be RFC 4648 base32, lower case and unpadded, so every verifier and older id still agree."""

from __future__ import annotations

import base64
import os

from reportgrid import ids


def test_table_base32_is_rfc4648_lower_unpadded() -> None:
    for raw in [bytes(32), b"\xff" * 32, *(os.urandom(32) for _ in range(500))]:
        assert ids._b32(raw) == base64.b32encode(raw).decode().rstrip("=").lower()


def test_minted_ids_verify_under_every_secret_order() -> None:
    old, new = b"o" * 16, b"n" * 16
    minted_old = ids.IdCodec([old]).new("acme", "eu-west-1")
    rotated = ids.IdCodec([new, old])
    assert rotated.verify("acme", minted_old.value) == minted_old
    minted = rotated.new("acme", "eu-west-1")
    assert ids.IdCodec([old, new]).verify("acme", minted.value) == minted
