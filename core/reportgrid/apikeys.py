"""API keys: generated, shown once, stored only as a SHA-256 hash with their tenant.

An item in the global table (so a key works in every region):
    pk = "apikey#<hex sha256 of the key>", tenant, created_ms, revoked (bool), name
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
    from mypy_boto3_dynamodb.client import DynamoDBClient

KEY_PREFIX: Final = "rg_"
_KEY_RE: Final = re.compile(r"^rg_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    tenant: str
    revoked: bool
    name: str = ""


def generate_key() -> str:
    """A new key: "rg_" + 32 random bytes, URL-safe base64 (43 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def well_formed(key: str) -> bool:
    return bool(_KEY_RE.fullmatch(key))


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_item(key: str, tenant: str, *, name: str = "", revoked: bool = False) -> dict[str, Any]:
    """The low-level DynamoDB item for a key."""
    validate_tenant(tenant)
    return {
        **{k: {"S": v} for k, v in resources.api_key_key(key_hash(key)).items()},
        "tenant": {"S": tenant},
        "name": {"S": name},
        "revoked": {"BOOL": revoked},
        "created_ms": {"N": str(time.time_ns() // 1_000_000)},
    }


def record_from_item(item: dict[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        tenant=item["tenant"]["S"],
        revoked=bool(item.get("revoked", {}).get("BOOL", False)),
        name=item.get("name", {}).get("S", ""),
    )


def put_key(dynamodb: DynamoDBClient, table: str, key: str, tenant: str, *, name: str = "") -> None:
    """Store a key (sync boto3 client). Used by the local region's seeding and by ops."""
    dynamodb.put_item(TableName=table, Item=key_item(key, tenant, name=name))


def revoke_key(dynamodb: DynamoDBClient, table: str, key: str) -> None:
    dynamodb.update_item(
        TableName=table,
        Key={k: {"S": v} for k, v in resources.api_key_key(key_hash(key)).items()},
        UpdateExpression="SET revoked = :t",
        ConditionExpression="attribute_exists(pk)",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
