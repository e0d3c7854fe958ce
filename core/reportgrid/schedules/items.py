"""How a schedule is stored: the schedule item and its due item (docs/SCHEDULES.md).

The one definition of both items' keys and attributes, shared by the edge (which writes
them on Create/Update/Pause/Resume/Delete) and the scheduler (which finds due items and
re-indexes them after a fire). Both are DynamoDB low-level attribute maps ({"S": ...}),
the form boto3's client, aiobotocore and the edge's lean JSON client all speak.

    schedule item: pk = "sched#<tenant>#<schedule id>", the fields of `Schedule`, and the
        tenant-index pair (tenant_shard = "sched!<tenant>", created_key = "<created ms,
        13 digits>#<schedule id>") through which ListSchedules pages a tenant's schedules.
    due item: pk = "due#<tenant>#<schedule id>", present only while the schedule is active
        (not paused, not ended), indexed at tenant_shard = "due!<shard>" with created_key =
        "<next fire, epoch minute, 10 digits>#<tenant>#<schedule id>", and carrying the
        schedule's `version` at the time it was filed.

Tenant isolation comes from the key: every read or write of a schedule builds its key from
the caller's own tenant, so another tenant's schedule id names an item that is not there.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from reportgrid import resources
from reportgrid.ids import validate_tenant

Item = dict[str, dict[str, Any]]

# Attribute names of the schedule item that conditional writes refer to.
A_VERSION: Final = "version"
A_TENANT: Final = "tenant"
A_SCHEDULE_ID: Final = "schedule_id"
A_NEXT_FIRE_MS: Final = "next_fire_ms"
MINUTE_MS: Final = 60_000


class Overlap(enum.StrEnum):
    """What a fire does while the schedule's previous report is not terminal yet."""

    SKIP = "skip"  # record the fire as skipped, submit nothing
    ALLOW = "allow"  # submit anyway


@dataclass(frozen=True, slots=True)
class Schedule:
    schedule_id: str
    tenant: str
    expression: str  # cron (5 fields) or rate(...), reportgrid/schedules/cron.py
    time_zone: str  # IANA name; "UTC" when the client gave none
    template: bytes  # a serialized reportgrid.v1.SubmitReportRequest, validated on write
    home_region: str  # the region that created it fires it (due.fires_here)
    created_ms: int
    updated_ms: int
    version: int = 1  # bumped by every write; conditional writes compare it
    overlap: Overlap = Overlap.SKIP
    start_ms: int = 0  # 0: from creation
    end_ms: int = 0  # 0: no end
    paused: bool = False
    description: str = ""
    next_fire_ms: int = 0  # 0: no further fire (ended, or paused)
    last_fire_ms: int = 0
    last_report_id: str = ""
    fired: int = 0  # fires that submitted a report
    skipped: int = 0  # fires skipped by the overlap policy or dropped after an outage

    @property
    def active(self) -> bool:
        """Whether the schedule has a due item: not paused and not past its end."""
        return not self.paused and self.next_fire_ms > 0


def schedule_key(tenant: str, schedule_id: str) -> Item:
    validate_tenant(tenant)
    return {resources.PARTITION_KEY: {"S": f"{resources.SCHEDULE_PREFIX}{tenant}#{schedule_id}"}}


def due_key(tenant: str, schedule_id: str) -> Item:
    validate_tenant(tenant)
    return {resources.PARTITION_KEY: {"S": f"{resources.DUE_PREFIX}{tenant}#{schedule_id}"}}


def list_partition(tenant: str) -> str:
    """The tenant-index partition that lists one tenant's schedules."""
    return resources.SCHEDULE_LIST_PARTITION_PREFIX + validate_tenant(tenant)


def due_shard(schedule_id: str) -> int:
    # A stable hash (not Python's salted hash()) so every process files an id alike.
    digest = hashlib.sha256(schedule_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % resources.DUE_SHARDS


def due_partition(shard: int) -> str:
    if not 0 <= shard < resources.DUE_SHARDS:
        raise ValueError(f"due shard {shard} is not in 0..{resources.DUE_SHARDS - 1}")
    return f"{resources.DUE_PARTITION_PREFIX}{shard}"


def due_sort_key(next_fire_ms: int, tenant: str, schedule_id: str) -> str:
    # Fixed-width epoch minutes, so string order is time order.
    return f"{next_fire_ms // MINUTE_MS:010d}#{tenant}#{schedule_id}"


def due_upper_bound(now_ms: int) -> str:
    """The largest due sort key of a fire at or before `now_ms`'s minute: a run queries
    `created_key <= due_upper_bound(now)` in every shard ("~" sorts after every id byte)."""
    return f"{now_ms // MINUTE_MS:010d}#~"


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def to_item(schedule: Schedule) -> Item:
    s = schedule
    return {
        **schedule_key(s.tenant, s.schedule_id),
        A_SCHEDULE_ID: {"S": s.schedule_id},
        A_TENANT: {"S": s.tenant},
        "expression": {"S": s.expression},
        "time_zone": {"S": s.time_zone},
        "template": {"B": s.template},
        "home_region": {"S": s.home_region},
        "created_ms": _n(s.created_ms),
        "updated_ms": _n(s.updated_ms),
        A_VERSION: _n(s.version),
        "overlap": {"S": s.overlap.value},
        "start_ms": _n(s.start_ms),
        "end_ms": _n(s.end_ms),
        "paused": {"BOOL": s.paused},
        "description": {"S": s.description},
        A_NEXT_FIRE_MS: _n(s.next_fire_ms),
        "last_fire_ms": _n(s.last_fire_ms),
        "last_report_id": {"S": s.last_report_id},
        "fired": _n(s.fired),
        "skipped": _n(s.skipped),
        resources.TENANT_INDEX_PARTITION_KEY: {"S": list_partition(s.tenant)},
        resources.TENANT_INDEX_SORT_KEY: {"S": resources.created_key(s.created_ms, s.schedule_id)},
    }


def from_item(item: Mapping[str, Mapping[str, Any]]) -> Schedule:
    def number(name: str) -> int:
        return int(item.get(name, {}).get("N", "0"))

    def text(name: str) -> str:
        return str(item.get(name, {}).get("S", ""))

    return Schedule(
        schedule_id=text(A_SCHEDULE_ID),
        tenant=text(A_TENANT),
        expression=text("expression"),
        time_zone=text("time_zone") or "UTC",
        template=bytes(item["template"]["B"]),
        home_region=text("home_region"),
        created_ms=number("created_ms"),
        updated_ms=number("updated_ms"),
        version=number(A_VERSION),
        overlap=Overlap(text("overlap") or Overlap.SKIP.value),
        start_ms=number("start_ms"),
        end_ms=number("end_ms"),
        paused=bool(item.get("paused", {}).get("BOOL", False)),
        description=text("description"),
        next_fire_ms=number(A_NEXT_FIRE_MS),
        last_fire_ms=number("last_fire_ms"),
        last_report_id=text("last_report_id"),
        fired=number("fired"),
        skipped=number("skipped"),
    )


@dataclass(frozen=True, slots=True)
class Due:
    """A due item: which schedule, when it fires next, and the version it was filed at
    (a run that reads a newer schedule version re-plans from the schedule item)."""

    tenant: str
    schedule_id: str
    next_fire_ms: int
    version: int
    home_region: str


def due_item(schedule: Schedule) -> Item:
    if not schedule.active:
        raise ValueError(f"schedule {schedule.schedule_id} is not active: it has no due item")
    s = schedule
    return {
        **due_key(s.tenant, s.schedule_id),
        A_SCHEDULE_ID: {"S": s.schedule_id},
        A_TENANT: {"S": s.tenant},
        A_NEXT_FIRE_MS: _n(s.next_fire_ms),
        A_VERSION: _n(s.version),
        "home_region": {"S": s.home_region},
        resources.TENANT_INDEX_PARTITION_KEY: {"S": due_partition(due_shard(s.schedule_id))},
        resources.TENANT_INDEX_SORT_KEY: {
            "S": due_sort_key(s.next_fire_ms, s.tenant, s.schedule_id)
        },
    }


def due_from_item(item: Mapping[str, Mapping[str, Any]]) -> Due:
    return Due(
        tenant=str(item[A_TENANT]["S"]),
        schedule_id=str(item[A_SCHEDULE_ID]["S"]),
        next_fire_ms=int(item[A_NEXT_FIRE_MS]["N"]),
        version=int(item[A_VERSION]["N"]),
        home_region=str(item.get("home_region", {}).get("S", "")),
    )


# The tenant's schedule counter (resources.MAX_SCHEDULES_PER_TENANT).
A_COUNT: Final = "count"


def count_key(tenant: str) -> Item:
    validate_tenant(tenant)
    return {resources.PARTITION_KEY: {"S": f"{resources.SCHEDULE_COUNT_PREFIX}{tenant}"}}
