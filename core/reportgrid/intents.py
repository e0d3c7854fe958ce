"""A user's intents about a report -- cancel it, delete it -- each in an item of its own.

The report item (`report#<id>`) is written by workers only; the intent items by the edge
only (any region):

    cancel#<id>    {pk, report_id, tenant, requested_ms, created_ms?, expires_at}
    deleted#<id>   {pk, report_id, tenant, deleted_ms, expires_at}     (the tombstone)

The global table replicates last-writer-wins per item, so two writers of one item can lose
each other's writes; an item with one kind of writer cannot. Workers read the intents with
the report (one BatchGetItem, `Snapshot`) before they start a run, at every lease renewal
and around their terminal write; the edge reads them for every view it serves
(docs/MULTI_REGION.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from reportgrid import records, resources
from reportgrid.records import Item, ReadItem, ReportRecord
from reportgrid.states import State

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesTypeDef

# An intent outlives every task that can still name its report (the task log's retention),
# plus a margin for queues and clocks; DynamoDB's TTL then removes it.
INTENT_SECONDS: Final = (resources.TASK_RETENTION_HOURS + 1) * 3600

A_REQUESTED_MS: Final = "requested_ms"
A_DELETED_MS: Final = "deleted_ms"
A_CREATED_MS: Final = "created_ms"


@dataclass(frozen=True, slots=True)
class CancelRequest:
    tenant: str
    requested_ms: int
    created_ms: int | None = None  # the report's, when the edge knew it (unkeyed ids)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A report's item and its intents, as read together."""

    report_id: str
    record: ReportRecord | None
    cancel: CancelRequest | None = None
    deleted: bool = False

    @property
    def cancel_requested(self) -> bool:
        return self.cancel is not None

    def view(self) -> ReportRecord | None:
        """The record as the API shows it (None: no record and no cancel request). A live
        report carries the cancel request; a terminal one is its item alone (immutable, so
        the caches may keep it: a cancel that came after the end lost and is not shown); a
        cancel requested before any worker wrote the report shows on an unstored PENDING
        placeholder."""
        record = self.record
        if record is None:
            return None if self.cancel is None else placeholder(self.report_id, self.cancel)
        if self.cancel is not None and not record.terminal and not record.cancel_requested:
            return record.with_(cancel_requested=True)
        return record


def placeholder(report_id: str, cancel: CancelRequest) -> ReportRecord:
    """The view of a report whose cancellation was requested before any worker wrote it."""
    return ReportRecord(
        report_id=report_id,
        tenant=cancel.tenant,
        kind="",
        state=State.PENDING,
        created_ms=cancel.created_ms or cancel.requested_ms,
        cancel_requested=True,
    )


def _low(key: dict[str, str]) -> Item:
    return {name: {"S": value} for name, value in key.items()}


def report_keys(report_id: str) -> list[Item]:
    """The keys a Snapshot reads: the report, its cancel request, its tombstone."""
    return [
        _low(resources.report_key(report_id)),
        _low(resources.cancel_key(report_id)),
        _low(resources.tombstone_key(report_id)),
    ]


def intent_keys(report_id: str) -> list[Item]:
    return report_keys(report_id)[1:]


def cancel_item(report_id: str, tenant: str, *, requested_ms: int, created_ms: int | None) -> Item:
    item: Item = {
        **_low(resources.cancel_key(report_id)),
        "report_id": {"S": report_id},
        "tenant": {"S": tenant},
        A_REQUESTED_MS: {"N": str(requested_ms)},
        resources.TTL_ATTRIBUTE: {"N": str(requested_ms // 1000 + INTENT_SECONDS)},
    }
    if created_ms is not None:
        item[A_CREATED_MS] = {"N": str(created_ms)}
    return item


def tombstone_item(report_id: str, tenant: str, *, deleted_ms: int) -> Item:
    return {
        **_low(resources.tombstone_key(report_id)),
        "report_id": {"S": report_id},
        "tenant": {"S": tenant},
        A_DELETED_MS: {"N": str(deleted_ms)},
        resources.TTL_ATTRIBUTE: {"N": str(deleted_ms // 1000 + INTENT_SECONDS)},
    }


def request_items(
    table: str, keys: Sequence[ReadItem], *, consistent: bool
) -> dict[str, KeysAndAttributesTypeDef]:
    """BatchGetItem's RequestItems for `keys` (at most 100)."""
    return {table: {"Keys": keys, "ConsistentRead": consistent}}


def snapshots(report_ids: Iterable[str], items: Iterable[ReadItem]) -> dict[str, Snapshot]:
    """Sort the items a BatchGetItem returned into one Snapshot per report id."""
    found: dict[str, dict[str, ReadItem]] = {rid: {} for rid in report_ids}
    prefixes = (resources.REPORT_PREFIX, resources.CANCEL_PREFIX, resources.TOMBSTONE_PREFIX)
    for item in items:
        pk = item[resources.PARTITION_KEY]["S"]
        for prefix in prefixes:
            if pk.startswith(prefix) and pk[len(prefix) :] in found:
                found[pk[len(prefix) :]][prefix] = item
    return {rid: _snapshot(rid, parts) for rid, parts in found.items()}


def _snapshot(report_id: str, parts: dict[str, ReadItem]) -> Snapshot:
    report = parts.get(resources.REPORT_PREFIX)
    cancel = parts.get(resources.CANCEL_PREFIX)
    tombstone = parts.get(resources.TOMBSTONE_PREFIX)
    return Snapshot(
        report_id=report_id,
        record=records.from_item(report) if report is not None else None,
        cancel=None
        if cancel is None
        else CancelRequest(
            tenant=cancel["tenant"]["S"],
            requested_ms=int(cancel[A_REQUESTED_MS]["N"]),
            created_ms=int(cancel[A_CREATED_MS]["N"]) if A_CREATED_MS in cancel else None,
        ),
        deleted=tombstone is not None,
    )
