"""The audit log: who did what to which tenant, when, from which region.

One item per action in the global table, kept resources.AUDIT_RETENTION_DAYS (the table's
TTL attribute):
    pk = "audit#<ms>#<random>", tenant, actor, action, region, at_ms, detail (JSON object)
listed newest first through the tenant index under ADMIN_AUDIT_PARTITION_PREFIX + tenant.

Actors: an operator's IAM identity (its ARN, from STS GetCallerIdentity) for `reportgrid
admin` actions; "key:<prefix>" for a tenant's own Delete/Cancel calls through the edge.
Items are in DynamoDB's low-level form, so the edge (aioboto3) and the admin CLI (boto3)
share this one mapping.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from reportgrid import resources

if TYPE_CHECKING:
    from collections.abc import Mapping

RETENTION_SECONDS: Final = resources.AUDIT_RETENTION_DAYS * 86_400


@dataclass(frozen=True, slots=True)
class AuditRecord:
    tenant: str
    actor: str
    action: str  # e.g. "tenant.create", "key.revoke", "report.delete"
    region: str
    at_ms: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "at_ms": self.at_ms,
            "tenant": self.tenant,
            "actor": self.actor,
            "action": self.action,
            "region": self.region,
            "detail": self.detail,
        }


def partition(tenant: str) -> str:
    return resources.ADMIN_AUDIT_PARTITION_PREFIX + tenant


def key_actor(prefix: str) -> str:
    """The actor of a call made with an API key: the key's prefix, never the key."""
    return f"key:{prefix}"


def to_item(record: AuditRecord) -> dict[str, Any]:
    suffix = secrets.token_hex(6)  # two actions in one millisecond stay two items
    return {
        resources.PARTITION_KEY: {"S": f"{resources.AUDIT_PREFIX}{record.at_ms:013d}#{suffix}"},
        "tenant": {"S": record.tenant},
        "actor": {"S": record.actor},
        "action": {"S": record.action},
        "region": {"S": record.region},
        "at_ms": {"N": str(record.at_ms)},
        "detail": {"S": json.dumps(record.detail, sort_keys=True, separators=(",", ":"))},
        resources.TTL_ATTRIBUTE: {"N": str(record.at_ms // 1000 + RETENTION_SECONDS)},
        resources.TENANT_INDEX_PARTITION_KEY: {"S": partition(record.tenant)},
        resources.TENANT_INDEX_SORT_KEY: {"S": f"{record.at_ms:013d}#{suffix}"},
    }


def from_item(item: Mapping[str, Mapping[str, Any]]) -> AuditRecord:
    return AuditRecord(
        tenant=item["tenant"]["S"],
        actor=item["actor"]["S"],
        action=item["action"]["S"],
        region=item.get("region", {}).get("S", ""),
        at_ms=int(item["at_ms"]["N"]),
        detail=json.loads(item.get("detail", {}).get("S", "{}")),
    )


def query_arguments(tenant: str, since_ms: int) -> dict[str, Any]:
    """Query arguments (without TableName) for `tenant`'s records since `since_ms`, newest
    first."""
    return {
        "IndexName": resources.TENANT_INDEX_NAME,
        "KeyConditionExpression": "#p = :p AND #s >= :since",
        "ExpressionAttributeNames": {
            "#p": resources.TENANT_INDEX_PARTITION_KEY,
            "#s": resources.TENANT_INDEX_SORT_KEY,
        },
        "ExpressionAttributeValues": {
            ":p": {"S": partition(tenant)},
            ":since": {"S": f"{since_ms:013d}"},
        },
        "ScanIndexForward": False,
    }


def now_ms() -> int:
    return time.time_ns() // 1_000_000
