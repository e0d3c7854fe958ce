"""Tenants and their quotas: the item operators write (`reportgrid admin`) and the edge reads.

An item in the global table (so a tenant is the same in every region):
    pk = "tenant#<tenant>", tenant, display_name, disabled (bool), created_ms, updated_ms,
    and the quotas (attributes named as the fields of `Quotas`)
listed through the tenant index under resources.ADMIN_TENANTS_PARTITION.

A key whose tenant has no item is enabled and has only the service's own limits: keys put
before tenants existed (the local region's seeding, tests, benchmarks) keep working.
DEFAULT_QUOTAS are what `reportgrid admin tenant create` gives where no quota is named.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final

from reportgrid import resources, webhook_policy
from reportgrid.errors import FieldViolation, InvalidArgument
from reportgrid.ids import validate_tenant

if TYPE_CHECKING:
    from collections.abc import Mapping

DAY_SECONDS: Final = 86_400
# What the API itself allows (reportgrid/validation.py): quotas can only narrow it.
MIN_RETENTION_SECONDS: Final = 60
MAX_RETENTION_SECONDS: Final = 90 * DAY_SECONDS


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one tenant may do. `submit_per_second` holds across the whole fleet (edge,
    grpc_edge/ratelimit.py), with a burst of one second's worth; the inline size and the
    retention are checked by the edge on every submit; `max_running` is stored for the
    workers (docs/RUNBOOK.md says what enforces it)."""

    submit_per_second: float = 100.0
    max_running: int = 50
    max_inline_bytes: int = resources.MAX_INLINE_INPUT_BYTES
    retention_default_seconds: int = 7 * DAY_SECONDS
    retention_max_seconds: int = MAX_RETENTION_SECONDS

    def problems(self) -> list[FieldViolation]:
        found: list[FieldViolation] = []
        if not 0 < self.submit_per_second <= 1_000_000:
            found.append(FieldViolation("submit_per_second", "must be > 0 and <= 1000000"))
        if self.max_running < 1:
            found.append(FieldViolation("max_running", "must be at least 1"))
        if not 1 <= self.max_inline_bytes <= resources.MAX_INLINE_INPUT_BYTES:
            found.append(
                FieldViolation(
                    "max_inline_bytes",
                    f"must be 1..{resources.MAX_INLINE_INPUT_BYTES} (the service's own limit)",
                )
            )
        found.extend(
            FieldViolation(name, f"must be {MIN_RETENTION_SECONDS} s to {MAX_RETENTION_SECONDS} s")
            for name in ("retention_default_seconds", "retention_max_seconds")
            if not MIN_RETENTION_SECONDS <= getattr(self, name) <= MAX_RETENTION_SECONDS
        )
        if self.retention_default_seconds > self.retention_max_seconds:
            found.append(
                FieldViolation("retention_default_seconds", "must not exceed retention_max_seconds")
            )
        return found

    def checked(self) -> Quotas:
        found = self.problems()
        if found:
            raise InvalidArgument(found)
        return self


DEFAULT_QUOTAS: Final = Quotas()
QUOTA_FIELDS: Final = tuple(f.name for f in fields(Quotas))


@dataclass(frozen=True, slots=True)
class Webhooks:
    """A tenant's webhook settings: the default URL for reports submitted without a notify
    URL (empty: none), and which of its derived signing secrets sign
    (reportgrid/webhook_policy.py): `secret_version`, and after a rotation also
    `previous_version` until `previous_until_ms`."""

    url: str = ""
    secret_version: int = 1
    previous_version: int = 0
    previous_until_ms: int = 0

    def signing_versions(self, now_ms: int) -> tuple[int, ...]:
        """The versions that sign a delivery now, the current one first."""
        if self.previous_version and now_ms < self.previous_until_ms:
            return (self.secret_version, self.previous_version)
        return (self.secret_version,)

    def signing_secrets(self, root: bytes, tenant: str, now_ms: int) -> tuple[str, ...]:
        return tuple(
            webhook_policy.signing_secret(root, tenant, version)
            for version in self.signing_versions(now_ms)
        )


NO_WEBHOOKS: Final = Webhooks()
# Attribute names of the webhook settings in the tenant item.
A_WEBHOOK_URL: Final = "webhook_url"
A_WEBHOOK_SECRET_VERSION: Final = "webhook_secret_version"  # noqa: S105 -- a name
A_WEBHOOK_PREVIOUS_VERSION: Final = "webhook_previous_version"
A_WEBHOOK_PREVIOUS_UNTIL: Final = "webhook_previous_until_ms"


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant: str
    display_name: str = ""
    disabled: bool = False
    created_ms: int = 0
    updated_ms: int = 0
    quotas: Quotas = DEFAULT_QUOTAS
    webhooks: Webhooks = NO_WEBHOOKS

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "quotas": asdict(self.quotas), "webhooks": asdict(self.webhooks)}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def item_key(tenant: str) -> dict[str, dict[str, str]]:
    return {k: {"S": v} for k, v in resources.tenant_key(tenant).items()}


def _number(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def quota_attributes(quotas: Quotas) -> dict[str, dict[str, str]]:
    return {name: _number(getattr(quotas, name)) for name in QUOTA_FIELDS}


def to_item(tenant: Tenant) -> dict[str, Any]:
    validate_tenant(tenant.tenant)
    return {
        **item_key(tenant.tenant),
        "tenant": {"S": tenant.tenant},
        "display_name": {"S": tenant.display_name},
        "disabled": {"BOOL": tenant.disabled},
        "created_ms": {"N": str(tenant.created_ms)},
        "updated_ms": {"N": str(tenant.updated_ms)},
        **quota_attributes(tenant.quotas),
        **webhook_attributes(tenant.webhooks),
        resources.TENANT_INDEX_PARTITION_KEY: {"S": resources.ADMIN_TENANTS_PARTITION},
        # Listed by name: the sort key is the tenant itself.
        resources.TENANT_INDEX_SORT_KEY: {"S": tenant.tenant},
    }


def webhook_attributes(webhooks: Webhooks) -> dict[str, dict[str, str]]:
    attributes = {
        A_WEBHOOK_SECRET_VERSION: {"N": str(webhooks.secret_version)},
        A_WEBHOOK_PREVIOUS_VERSION: {"N": str(webhooks.previous_version)},
        A_WEBHOOK_PREVIOUS_UNTIL: {"N": str(webhooks.previous_until_ms)},
    }
    if webhooks.url:
        attributes[A_WEBHOOK_URL] = {"S": webhooks.url}
    return attributes


def webhooks_from_item(item: Mapping[str, Mapping[str, Any]]) -> Webhooks:
    """A tenant item's webhook settings; missing attributes are the defaults (no URL,
    secret version 1), so items written before webhooks existed read as such."""

    def number(name: str, default: int) -> int:
        return int(item.get(name, {}).get("N", str(default)))

    return Webhooks(
        url=item.get(A_WEBHOOK_URL, {}).get("S", ""),
        secret_version=number(A_WEBHOOK_SECRET_VERSION, 1),
        previous_version=number(A_WEBHOOK_PREVIOUS_VERSION, 0),
        previous_until_ms=number(A_WEBHOOK_PREVIOUS_UNTIL, 0),
    )


def quotas_from_item(item: Mapping[str, Mapping[str, Any]]) -> Quotas:
    """The quotas of a tenant item; a missing attribute is its default (items written by
    an older version stay readable)."""
    changes: dict[str, Any] = {}
    for f in fields(Quotas):
        value = item.get(f.name)
        if value is not None and "N" in value:
            changes[f.name] = float(value["N"]) if f.type == "float" else int(value["N"])
    return replace(DEFAULT_QUOTAS, **changes)


def from_item(item: Mapping[str, Mapping[str, Any]]) -> Tenant:
    return Tenant(
        tenant=item["tenant"]["S"],
        display_name=item.get("display_name", {}).get("S", ""),
        disabled=bool(item.get("disabled", {}).get("BOOL", False)),
        created_ms=int(item.get("created_ms", {}).get("N", "0")),
        updated_ms=int(item.get("updated_ms", {}).get("N", "0")),
        quotas=quotas_from_item(item),
        webhooks=webhooks_from_item(item),
    )
