"""Signed ListReports page tokens.

A token carries, per tenant-index shard, where the next page starts (the sort key of the
last report returned from that shard, or "" once the shard is exhausted), a hash of the
filters it was issued for and an expiry; it is bound to the tenant and HMAC-signed with the
first id secret under its own context string, so it cannot be forged, altered, replayed by
another tenant or reused with other filters. Every id secret verifies, as for report ids: a
token issued before a rotation keeps working until its secret is dropped (or it expires).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from reportgrid.errors import InvalidArgument

_CONTEXT: Final = b"reportgrid/list-page-token/v1\0"
TOKEN_LIFETIME_SECONDS: Final = 24 * 3600
_MAC_LEN: Final = 16
FIELD: Final = "page_token"


@dataclass(frozen=True, slots=True)
class PageCursor:
    # One entry per shard: None = not started, "" = exhausted, else an exclusive upper bound.
    shards: tuple[str | None, ...]
    filters_hash: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def filters_hash(parts: Sequence[object]) -> str:
    return hashlib.sha256(json.dumps(list(parts), separators=(",", ":")).encode()).hexdigest()[:32]


class PageTokens:
    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("PageTokens needs at least one secret")
        self._secrets = tuple(secrets)  # the first signs, every one verifies

    def _mac(self, tenant: str, payload: bytes, secret: bytes) -> bytes:
        message = _CONTEXT + tenant.encode() + b"\0" + payload
        return hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_LEN]

    def issue(
        self, tenant: str, shards: Sequence[str | None], filters: str, *, now: float | None = None
    ) -> str:
        expires = int((time.time() if now is None else now) + TOKEN_LIFETIME_SECONDS)
        payload = json.dumps(
            {"s": list(shards), "f": filters, "e": expires}, separators=(",", ":")
        ).encode()
        return _b64(payload) + "." + _b64(self._mac(tenant, payload, self._secrets[0]))

    def read(
        self, tenant: str, token: str, filters: str, shard_count: int, *, now: float | None = None
    ) -> PageCursor:
        """The cursor, or InvalidArgument on field page_token."""
        try:
            encoded_payload, encoded_mac = token.split(".")
            payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
        except (ValueError, binascii.Error):
            raise InvalidArgument.field(FIELD, "is not a page token this service issued") from None
        if not any(
            hmac.compare_digest(mac, self._mac(tenant, payload, secret)) for secret in self._secrets
        ):
            raise InvalidArgument.field(FIELD, "is not a page token this service issued")
        try:
            data = json.loads(payload)
            shards = tuple(data["s"])
            token_filters, expires = str(data["f"]), int(data["e"])
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument.field(FIELD, "is not a page token this service issued") from None
        if len(shards) != shard_count or not all(s is None or isinstance(s, str) for s in shards):
            raise InvalidArgument.field(FIELD, "was issued by an incompatible server version")
        if (time.time() if now is None else now) >= expires:
            raise InvalidArgument.field(FIELD, "has expired; list again from the first page")
        if not hmac.compare_digest(token_filters, filters):
            raise InvalidArgument.field(
                FIELD, "was issued for other filters; use the same filters as the first page"
            )
        return PageCursor(shards, token_filters, expires)
