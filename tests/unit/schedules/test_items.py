"""The stored form of a schedule: items round-trip, keys come from the tenant, and due keys
sort by fire time so one range query per shard finds every due schedule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reportgrid import resources
from reportgrid.schedules import items
from reportgrid.schedules.fires import new_schedule_id
from reportgrid.schedules.items import MINUTE_MS, Overlap, Schedule


def schedule(**changes: object) -> Schedule:
    base = Schedule(
        schedule_id=new_schedule_id(),
        tenant="acme",
        expression="0 8 * * MON",
        time_zone="Europe/Berlin",
        template=b"\x0a\x09synthetic",
        home_region="eu-west-1",
        created_ms=1_767_225_600_000,
        updated_ms=1_767_225_600_500,
        next_fire_ms=1_767_600_000_000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_schedule_item_round_trips_every_field() -> None:
    s = Schedule(
        schedule_id=new_schedule_id(),
        tenant="acme",
        expression="rate(5 minutes)",
        time_zone="UTC",
        template=b"\x00\x01binary",
        home_region="us-east-1",
        created_ms=1,
        updated_ms=2,
        version=7,
        overlap=Overlap.ALLOW,
        start_ms=3,
        end_ms=4,
        paused=True,
        description="weekly",
        next_fire_ms=5,
        last_fire_ms=6,
        last_report_id="r-1",
        fired=8,
        skipped=9,
    )
    assert items.from_item(items.to_item(s)) == s


def test_keys_are_built_from_the_tenant_so_another_tenant_names_another_item() -> None:
    s = schedule()
    assert items.schedule_key("acme", s.schedule_id) != items.schedule_key("evil", s.schedule_id)
    assert items.to_item(s)["pk"] == items.schedule_key("acme", s.schedule_id)["pk"]
    # "#" in a tenant would let one tenant's key collide with another's: refused.
    with pytest.raises(ValueError, match="tenant"):
        items.schedule_key("acme#x", s.schedule_id)
    item = items.to_item(s)
    assert item[resources.TENANT_INDEX_PARTITION_KEY]["S"] == "sched!acme"


def test_due_keys_sort_by_fire_minute_and_the_bound_includes_the_current_minute() -> None:
    s = schedule()
    due = items.due_item(s)
    key = due[resources.TENANT_INDEX_SORT_KEY]["S"]
    fire = s.next_fire_ms
    assert items.due_upper_bound(fire) >= key > items.due_upper_bound(fire - MINUTE_MS)
    later = items.due_sort_key(fire + MINUTE_MS, "aaa", s.schedule_id)
    assert later > items.due_upper_bound(fire)
    assert items.due_from_item(due) == items.Due(
        tenant="acme",
        schedule_id=s.schedule_id,
        next_fire_ms=fire,
        version=1,
        home_region="eu-west-1",
    )


def test_due_shards_are_stable_and_in_range() -> None:
    ids = [new_schedule_id() for _ in range(400)]
    shards = {items.due_shard(i) for i in ids}
    assert shards <= set(range(resources.DUE_SHARDS))
    assert len(shards) == resources.DUE_SHARDS  # 400 ids cover all 16 shards
    assert items.due_shard(ids[0]) == items.due_shard(ids[0])
    with pytest.raises(ValueError, match="shard"):
        items.due_partition(resources.DUE_SHARDS)


def test_an_inactive_schedule_has_no_due_item() -> None:
    for inactive in (schedule(paused=True), schedule(next_fire_ms=0)):
        assert not inactive.active
        with pytest.raises(ValueError, match="not active"):
            items.due_item(inactive)
