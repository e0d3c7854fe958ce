"""Self-certifying, tenant-bound report ids.

An id is `rpt_` + base32 of 32 bytes:

    version(1) flags(1) region(2) created_ms(6) entropy(10) mac(12)

The MAC is HMAC-SHA256 over (tenant, the first 20 bytes) with a deployment secret. So the
edge can tell, with no database read, an id it issued to this tenant from a forged one or
another tenant's (NOT_FOUND); and the id itself says when and where the report was
accepted, so a verified id with no record is PENDING while its task can still be in the
task log and NOT_FOUND after (grpc_edge/reads.py view_missing).

Every id is fresh: region, time and entropy of the call that minted it. A submit with an
idempotency key gets the id its key's first call minted, from the key's claim item
(grpc_edge/idempotency.py), not an id derived from the key, so a retry names the same
report across a rotation of the signing secret (every secret verifies). `flags` is 0;
it is reserved (earlier builds set bit 0 on ids derived from a key, which carried no time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from reportgrid.errors import InvalidArgument, NotFound

PREFIX: Final = "rpt_"
VERSION: Final = 1
_BODY_LEN: Final = 20
_MAC_LEN: Final = 12
_RAW_LEN: Final = _BODY_LEN + _MAC_LEN
ENCODED_LEN: Final = len(PREFIX) + 52  # ceil(32 * 8 / 5) base32 characters, unpadded
_ID_RE: Final = re.compile(r"^rpt_[a-z2-7]{52}$")
_TENANT_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Encoding an id is on every Submit's path: the 32 bytes (256 bits, padded to 260) as 26
# ten-bit groups, each two characters of a 1,024-entry table. Half the cost of
# base64.b32encode + rstrip + lower, and the same text (RFC 4648 alphabet, lower case).
_B32_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS: Final = tuple(a + b for a in _B32_ALPHABET for b in _B32_ALPHABET)
_B32_SHIFTS: Final = tuple(range(250, -10, -10))

# Append-only: an id's region code must mean the same region forever.
REGION_CODES: Final[dict[str, int]] = {
    name: code
    for code, name in enumerate(
        [
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-central-2",
            "eu-north-1",
            "eu-south-1",
            "eu-south-2",
            "ap-south-1",
            "ap-south-2",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ap-southeast-4",
            "ap-east-1",
            "sa-east-1",
            "me-south-1",
            "me-central-1",
            "af-south-1",
            "il-central-1",
            "ca-west-1",
            "mx-central-1",
        ],
        start=1,
    )
}
_REGION_NAMES: Final = {code: name for name, code in REGION_CODES.items()}


@dataclass(frozen=True, slots=True)
class ReportId:
    """A verified report id and what it carries."""

    value: str
    version: int
    region: str | None  # None for a region code this build does not know
    created_ms: int  # epoch ms, as the minting edge's clock read it

    def __str__(self) -> str:
        return self.value


def validate_tenant(tenant: str) -> str:
    if not _TENANT_RE.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r} must be 1-64 characters of [A-Za-z0-9_-]")
    return tenant


def validate_idempotency_key(key: str, field: str = "idempotency_key") -> str:
    if not _IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise InvalidArgument.field(field, "must be 1 to 128 characters of [A-Za-z0-9._:-]")
    return key


def region_code(region: str) -> int:
    try:
        return REGION_CODES[region]
    except KeyError:
        raise ValueError(
            f"region {region!r} has no report id code; add it to reportgrid.ids.REGION_CODES"
        ) from None


class IdCodec:
    """Issues and verifies report ids with the deployment's secrets.

    The first secret signs; every secret verifies, so a secret can be rotated in without
    invalidating the ids issued under the previous one.
    """

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("IdCodec needs at least one secret")
        if any(len(s) < 16 for s in secrets):
            raise ValueError("id secrets must be at least 16 bytes long")
        self._secrets = tuple(secrets)
        # Keyed once: copying a keyed HMAC is cheaper than keying a new one per id.
        self._hmacs = tuple(hmac.new(s, digestmod=hashlib.sha256) for s in secrets)

    def new(self, tenant: str, region: str, *, now_ms: int | None = None) -> ReportId:
        """A fresh id, accepted now (or at `now_ms`) in `region`."""
        validate_tenant(tenant)
        created = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        body = (
            bytes([VERSION, 0])
            + region_code(region).to_bytes(2, "big")
            + created.to_bytes(6, "big")
            + os.urandom(10)
        )
        raw = body + self._mac(0, tenant, body)
        return _describe(PREFIX + _b32(raw), body)

    def verify(self, tenant: str, value: str, field: str = "report_id") -> ReportId:
        """The id, if this deployment issued it to this tenant.

        Raises InvalidArgument for something that is not shaped like an id at all, and
        NotFound for a well-formed id that was forged or belongs to another tenant.
        """
        if not value:
            raise InvalidArgument.field(field, "is required")
        if not _ID_RE.fullmatch(value):
            raise InvalidArgument.field(
                field, f"must be a report id: {PREFIX!r} followed by 52 base32 characters"
            )
        try:
            raw = base64.b32decode(value[len(PREFIX) :].upper() + "====")
        except binascii.Error:
            raise InvalidArgument.field(field, "is not valid base32") from None
        body, mac = raw[:_BODY_LEN], raw[_BODY_LEN:_RAW_LEN]
        if len(raw) != _RAW_LEN or not any(
            hmac.compare_digest(mac, self._mac(index, tenant, body))
            for index in range(len(self._hmacs))
        ):
            raise NotFound("report", value)
        if body[0] != VERSION:
            raise NotFound("report", value)
        return _describe(value, body)

    def _mac(self, secret_index: int, tenant: str, body: bytes) -> bytes:
        mac = self._hmacs[secret_index].copy()
        mac.update(tenant.encode() + b"\0" + body)
        return mac.digest()[:_MAC_LEN]


def _b32(raw: bytes) -> str:
    """Unpadded lower-case base32 of 32 bytes."""
    bits = int.from_bytes(raw, "big") << 4
    return "".join([_B32_PAIRS[(bits >> shift) & 1023] for shift in _B32_SHIFTS])


def _describe(value: str, body: bytes) -> ReportId:
    return ReportId(
        value=value,
        version=body[0],
        region=_REGION_NAMES.get(int.from_bytes(body[2:4], "big")),
        created_ms=int.from_bytes(body[4:10], "big"),
    )
