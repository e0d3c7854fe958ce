"""The per-tenant slot scripts against a real redis-server (functions/tenant_slots.py)."""

from __future__ import annotations

import time

from functions.tenant_slots import TenantQuotas, TenantSlots, Wanted
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.local.servers import free_port


def _slots(aws: RegionResources, url: str | None, *, cap: int, lease: float) -> TenantSlots:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    return TenantSlots(
        url, TenantQuotas(ddb, aws.table_name, default_max_running=cap), lease_seconds=lease
    )


def test_cap_expiry_and_idempotent_release(aws: RegionResources, redis_url: str) -> None:
    slots = _slots(aws, redis_url, cap=2, lease=0.5)
    runs = [Wanted("acme", f"r{i}", "o") for i in range(3)]
    assert slots.acquire(runs).granted == frozenset(runs[:2])  # the cap
    assert not slots.acquire([runs[2]]).granted
    time.sleep(0.6)  # no renewal: the holders' leases ran out, their slots free themselves
    assert slots.acquire([runs[2]]).granted == {runs[2]}
    slots.release([runs[2]])
    slots.release([runs[2]])  # idempotent
    assert slots.acquire(runs[:2]).granted == frozenset(runs[:2])
    assert not slots.acquire([Wanted("acme", "r9", "o")]).granted
    assert slots.acquire([Wanted("other", "r9", "o")]).granted  # another tenant's own cap


def test_cache_down_fails_open(aws: RegionResources) -> None:
    slots = _slots(aws, f"redis://127.0.0.1:{free_port()}/0", cap=1, lease=5)
    grant = slots.acquire([Wanted("acme", "r1", "o"), Wanted("acme", "r2", "o")])
    assert grant.fail_open
    assert grant.has(Wanted("acme", "r2", "o"))
    assert slots.take_fail_opens() == 1
