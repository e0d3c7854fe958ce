"""Idempotency claims, the pure part: one claim item per (tenant, key) in the report table,
which names the report the key was first used for and the fingerprint of that request.

The one definition of the claim item, its key, the condition it is written under and the
request fingerprint, shared by the edge (grpc_edge/idempotency.py, which writes claims for
SubmitReport) and the scheduler (functions/scheduler, which claims each fire's key the same
way), so a scheduled fire and a client's retry of it can never disagree about a key.

A claim may be written when there is none, or when the one there has expired (`expires_at`
past: DynamoDB's TTL deletes lazily, typically within a few days, so an expired item can
still be there): CONDITION, with NAMES and the value `:now` (epoch seconds).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import json_format

from reportgrid import resources
from reportgrid.errors import IdempotencyKeyReused, InvalidArgument, Unavailable
from reportgrid.v1 import reports_pb2 as pb

KEY_LIFETIME_SECONDS: Final = resources.IDEMPOTENCY_KEY_HOURS * 3600
CONDITION: Final = "attribute_not_exists(#pk) OR #exp < :now"
NAMES: Final = {"#pk": resources.PARTITION_KEY, "#exp": resources.TTL_ATTRIBUTE}

Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claim:
    """Which report a tenant's key names, and the request that made it."""

    report_id: str
    fingerprint: str
    created_ms: int
    region: str
    expires_at: int  # epoch seconds


# Marks a fingerprint of the canonical JSON form. Claims stored before it (live 24 h) hold
# the SHA-256 of deterministic protobuf bytes, unmarked; `Fingerprint.matches` accepts those
# too, so a deploy does not refuse a retry that straddles it. Remove the legacy branch 24 h
# after every region runs this version.
_VERSION: Final = "j1:"
# Made once: json.dumps with arguments builds an encoder per call (~1.5 us).
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A request's fingerprint (`value`, stored in the claim) and what it was taken of (the
    key-less copy, its inline data), for the rare comparison with a legacy fingerprint."""

    value: str
    _copy: pb.SubmitReportRequest = field(compare=False, repr=False)
    _inline: bytes = field(compare=False, repr=False)

    def matches(self, stored: str) -> bool:
        if stored == self.value:
            return True
        if stored.startswith(_VERSION):
            return False
        if self._inline:  # as the legacy fingerprint saw it (not its unknown fields)
            self._copy.input.inline_data = self._inline
        legacy = hashlib.sha256(self._copy.SerializeToString(deterministic=True))
        return stored == legacy.hexdigest()


def fingerprint(request: pb.SubmitReportRequest) -> Fingerprint:
    """SHA-256 of the request as sent, without its idempotency key, in canonical JSON: the
    proto3 JSON mapping with sorted keys and no spaces. Not the protobuf bytes: even
    deterministic serialization is not canonical, it may change with the schema, the
    library or the build (protobuf.dev/programming-guides/serialization-not-canonical/),
    and a retry after a deploy must fingerprint alike. Fields at their defaults are left
    out, so a field added later changes no earlier request's fingerprint; unknown fields
    (a newer client's) are dropped, as the rest of the edge ignores them. Call it before
    anything fills defaults in (quotas).

    Inline input (up to megabytes) counts by its SHA-256: base64 in JSON would cost ten
    times the hash."""
    copy = pb.SubmitReportRequest()
    copy.CopyFrom(request)
    copy.ClearField("idempotency_key")
    copy.DiscardUnknownFields()
    inline = request.input.inline_data
    if inline:
        copy.input.inline_data = hashlib.sha256(inline).digest()
    try:
        doc = json_format.MessageToDict(copy, preserving_proto_field_name=True)
    except json_format.SerializeToJsonError:
        # A Struct number that is NaN or infinite: JSON has no such number.
        raise InvalidArgument.field(
            "params", "NaN and Infinity are not JSON numbers; send them as strings"
        ) from None
    text = _CANONICAL.encode(doc)
    return Fingerprint(_VERSION + hashlib.sha256(text.encode()).hexdigest(), copy, inline)


def claim_key(tenant: str, key: str) -> dict[str, str]:
    return resources.idempotency_claim_key(tenant, hashlib.sha256(key.encode()).hexdigest())


def new_claim(report_id: str, fingerprint: str, *, created_ms: int, region: str) -> Claim:
    """A claim made now for `report_id`, kept KEY_LIFETIME_SECONDS from its creation."""
    return Claim(
        report_id=report_id,
        fingerprint=fingerprint,
        created_ms=created_ms,
        region=region,
        expires_at=created_ms // 1000 + KEY_LIFETIME_SECONDS,
    )


def claim_item(pk: dict[str, str], claim: Claim) -> Item:
    """The claim item, as the low-level DynamoDB clients take it."""
    return {
        **{k: {"S": v} for k, v in pk.items()},
        "report_id": {"S": claim.report_id},
        "fingerprint": {"S": claim.fingerprint},
        "created_ms": {"N": str(claim.created_ms)},
        "region": {"S": claim.region},
        resources.TTL_ATTRIBUTE: {"N": str(claim.expires_at)},
    }


def claim_of(item: Mapping[str, Any]) -> Claim:
    """The claim an item holds; Unavailable when it is not one (a caller retries)."""
    try:
        return Claim(
            report_id=item["report_id"]["S"],
            fingerprint=item["fingerprint"]["S"],
            created_ms=int(item["created_ms"]["N"]),
            region=item["region"]["S"],
            expires_at=int(item[resources.TTL_ATTRIBUTE]["N"]),
        )
    except (KeyError, TypeError, ValueError):
        raise Unavailable("the idempotency key's claim could not be read; retry") from None


def reused(key: str, claim: Claim) -> IdempotencyKeyReused:
    """What a key used again with another request gets (nothing was enqueued): a
    FAILED_PRECONDITION of type errors.IDEMPOTENCY_KEY_REUSED on `idempotency_key`."""
    return IdempotencyKeyReused(
        f"idempotency_key {key!r} was used for report {claim.report_id} with a different "
        "request; send that same request again to get that report, or use a new key",
        key=key,
    )
