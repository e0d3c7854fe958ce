"""API keys: generated, shown once, stored only as a SHA-256 hash with their tenant.

An item in the global table (so a key works in every region):
    pk = "apikey#<hex sha256 of the key>", tenant, name, created_ms, revoked (bool),
    prefix (the key's first PREFIX_CHARS characters: how operators name it, never enough
    to use it), expires_ms (optional: the key stops working then), last_used_ms (coarse:
    the edge writes it at most once per key per LAST_USED_INTERVAL_MS per process)
and, to list a tenant's keys without a scan, the tenant index's attributes under the
partition resources.ADMIN_KEYS_PARTITION_PREFIX + tenant.
The edge resolves `authorization: Bearer <key>` by hashing it and reading this item.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from reportgrid import resources
from reportgrid.ids import validate_tenant

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_dynamodb.client import DynamoDBClient

KEY_PREFIX: Final = "rg_"
_KEY_RE: Final = re.compile(r"^rg_[A-Za-z0-9_-]{43}$")
# "rg_" and 8 random characters (48 bits): unique among a tenant's keys, useless to a thief.
PREFIX_CHARS: Final = 11
_PREFIX_RE: Final = re.compile(r"^rg_[A-Za-z0-9_-]{8}$")
# How often one edge process records that a key was used (one conditional write at most).
LAST_USED_INTERVAL_MS: Final = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    tenant: str
    revoked: bool
    name: str = ""
    prefix: str = ""
    created_ms: int = 0
    expires_ms: int | None = None
    last_used_ms: int | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expires_ms is not None and now_ms >= self.expires_ms


def generate_key() -> str:
    """A new key: "rg_" + 32 random bytes, URL-safe base64 (43 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def well_formed(key: str) -> bool:
    return bool(_KEY_RE.fullmatch(key))


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_CHARS]


def valid_prefix(prefix: str) -> bool:
    return bool(_PREFIX_RE.fullmatch(prefix))


def keys_partition(tenant: str) -> str:
    """The tenant index partition that lists `tenant`'s keys."""
    return resources.ADMIN_KEYS_PARTITION_PREFIX + tenant


def item_key(digest: str) -> dict[str, dict[str, str]]:
    """The low-level primary key of the item of the key whose SHA-256 is `digest`."""
    return {k: {"S": v} for k, v in resources.api_key_key(digest).items()}


def key_item(
    key: str,
    tenant: str,
    *,
    name: str = "",
    revoked: bool = False,
    expires_ms: int | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """The low-level DynamoDB item for a key."""
    validate_tenant(tenant)
    created = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    prefix = key_prefix(key)
    item: dict[str, Any] = {
        **item_key(key_hash(key)),
        "tenant": {"S": tenant},
        "name": {"S": name},
        "revoked": {"BOOL": revoked},
        "created_ms": {"N": str(created)},
        "prefix": {"S": prefix},
        resources.TENANT_INDEX_PARTITION_KEY: {"S": keys_partition(tenant)},
        resources.TENANT_INDEX_SORT_KEY: {"S": resources.created_key(created, prefix)},
    }
    if expires_ms is not None:
        item["expires_ms"] = {"N": str(expires_ms)}
    return item


def _int(item: Mapping[str, Mapping[str, Any]], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value is not None and "N" in value else None


def record_from_item(item: Mapping[str, Mapping[str, Any]]) -> ApiKeyRecord:
    return ApiKeyRecord(
        tenant=item["tenant"]["S"],
        revoked=bool(item.get("revoked", {}).get("BOOL", False)),
        name=item.get("name", {}).get("S", ""),
        prefix=item.get("prefix", {}).get("S", ""),
        created_ms=_int(item, "created_ms") or 0,
        expires_ms=_int(item, "expires_ms"),
        last_used_ms=_int(item, "last_used_ms"),
    )


def put_key(
    dynamodb: DynamoDBClient,
    table: str,
    key: str,
    tenant: str,
    *,
    name: str = "",
    expires_ms: int | None = None,
) -> None:
    """Store a key (sync boto3 client). Used by the local region's seeding and by ops."""
    dynamodb.put_item(
        TableName=table,
        Item=key_item(key, tenant, name=name, expires_ms=expires_ms),
    )


def revoke_key(dynamodb: DynamoDBClient, table: str, key: str) -> None:
    dynamodb.update_item(
        TableName=table,
        Key=item_key(key_hash(key)),
        UpdateExpression="SET revoked = :t",
        ConditionExpression="attribute_exists(pk)",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )


def last_used_update(digest: str, now_ms: int) -> dict[str, Any]:
    """UpdateItem arguments (without TableName) that record a use of the key, unless a use
    less than LAST_USED_INTERVAL_MS ago is already recorded (by any process): the write
    is refused by its condition then, so a fleet writes about once per key per interval."""
    return {
        "Key": item_key(digest),
        "UpdateExpression": "SET last_used_ms = :now",
        "ConditionExpression": (
            "attribute_exists(pk) AND (attribute_not_exists(last_used_ms) OR last_used_ms < :stale)"
        ),
        "ExpressionAttributeValues": {
            ":now": {"N": str(now_ms)},
            ":stale": {"N": str(now_ms - LAST_USED_INTERVAL_MS)},
        },
    }
