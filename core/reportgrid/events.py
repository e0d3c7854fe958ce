"""Completion events: the schema of what Reportgrid puts on each region's EventBridge bus
(resources.EVENT_BUS_NAME) when a report ends, and the one function that builds an event's
detail from a ReportRecord (docs/EVENTS.md is the consumers' reference).

The contract (extend only by adding fields; a breaking change is a new schema_version):
- Source resources.EVENT_SOURCE, DetailType one of DETAIL_TYPES' values;
- detail: schema_version, event_id (the same for every delivery of one report's terminal
  state, so consumers dedupe by it: delivery is at least once), report_id, tenant, kind,
  state, create_time/start_time/end_time (RFC 3339 UTC, or null), region (whose worker
  ended it), home_region, attempts, result (or null), error (or null), labels, notify_url,
  and trace_id (the X-Ray trace id the edge gave the report) when the item holds one.

Which table-stream records announce anything is decided here too (`announces`), and the
event-source mapping's filter (`stream_filter_patterns`) is its coarse, service-side copy,
so that only terminal transitions written in this region invoke the function at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from reportgrid import records, resources, tracing
from reportgrid.errors import bounded
from reportgrid.records import ReportRecord
from reportgrid.states import State

SCHEMA_VERSION: Final = "1"

# EXPIRED is part of the schema but not announced today: a report becomes EXPIRED at its
# expire_time by computation at read time (ReportRecord.effective_state), nothing is
# written then, and DynamoDB's TTL deletion comes "typically within two days" after
# (UpdateTimeToLive docs) — docs/EVENTS.md, "Report Expired".
DETAIL_TYPES: Final[Mapping[State, str]] = {
    State.SUCCEEDED: "Report Succeeded",
    State.FAILED: "Report Failed",
    State.CANCELLED: "Report Cancelled",
    State.EXPIRED: "Report Expired",
}
# The terminal states whose write publishes an event (see DETAIL_TYPES on EXPIRED).
ANNOUNCED: Final = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

# Bounds that keep a detail far below EventBridge's 256 KB entry limit (PutEvents: "the
# total entry size must be less than 256 KB"): ~40 KB at most with every bound reached.
MAX_LABELS: Final = 64
MAX_LABEL_KEY_BYTES: Final = 128
MAX_LABEL_VALUE_BYTES: Final = 256
MAX_ERROR_MESSAGE_BYTES: Final = 1024
MAX_NOTIFY_URL_BYTES: Final = 2048
EVENT_ID_HEX_CHARS: Final = 32
# PutEvents takes at most 10 entries and 256 KB per call.
MAX_ENTRIES_PER_PUT: Final = 10
MAX_PUT_BYTES: Final = 256 * 1024


def event_id(report_id: str, state: State) -> str:
    """The dedupe key of one report's one terminal state: hex SHA-256 of
    "<report_id>:<STATE>", first 32 characters."""
    digest = hashlib.sha256(f"{report_id}:{state.value}".encode()).hexdigest()
    return digest[:EVENT_ID_HEX_CHARS]


def rfc3339(ms: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds ("2026-12-02T07:06:19.123Z")."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _labels(record: ReportRecord) -> dict[str, str]:
    # Always present (empty without labels), so consumers can rely on the field.
    return {
        bounded(k, MAX_LABEL_KEY_BYTES): bounded(v, MAX_LABEL_VALUE_BYTES)
        for k, v in sorted(record.labels.items())[:MAX_LABELS]
    }


def _notify_url(record: ReportRecord) -> str | None:
    # The request's own webhook; null: the tenant's default (if any) is the webhook
    # function's to find. Never cut short: a URL is valid whole or not at all.
    url = record.notify_url
    return url if url and len(url.encode()) <= MAX_NOTIFY_URL_BYTES else None


def detail(record: ReportRecord, *, region: str) -> dict[str, Any]:
    """The event detail of a terminal record, published in `region`."""
    if record.state not in DETAIL_TYPES:
        raise ValueError(f"report {record.report_id} is {record.state.value}, not terminal")
    result = record.result
    failed = record.state is State.FAILED or bool(record.error_reason)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id(record.report_id, record.state),
        "report_id": record.report_id,
        "tenant": record.tenant,
        "kind": record.kind,
        "state": record.state.value,
        "create_time": rfc3339(record.created_ms),
        "start_time": rfc3339(record.started_ms),
        "end_time": rfc3339(record.ended_ms),
        "region": region,
        "home_region": record.home_region or None,
        "attempts": record.attempts,
        "result": {
            "size_bytes": result.size_bytes,
            "sha256": result.sha256,
            "row_count": result.row_count,
            "content_type": result.content_type,
        }
        if result is not None and record.state is State.SUCCEEDED
        else None,
        "error": {
            "reason": bounded(record.error_reason, MAX_ERROR_MESSAGE_BYTES),
            "message": bounded(record.error_message, MAX_ERROR_MESSAGE_BYTES),
        }
        if failed
        else None,
        "labels": _labels(record),
        "notify_url": _notify_url(record),
        # Optional (added, schema_version unchanged): only when the item holds one.
        **({"trace_id": trace} if (trace := tracing.stored_trace_id(record.extra)) else {}),
    }


def put_entry(record: ReportRecord, *, region: str, bus_name: str) -> dict[str, Any]:
    """The PutEvents request entry of a terminal record."""
    return {
        "Source": resources.EVENT_SOURCE,
        "DetailType": DETAIL_TYPES[record.state],
        "Detail": json.dumps(detail(record, region=region), separators=(",", ":")),
        "EventBusName": bus_name,
        "Resources": [],
    }


def entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge counts it against the 256 KB (docs.aws.amazon.com/
    eventbridge/latest/userguide/eb-putevent-size.html): 14 bytes for a Time, the UTF-8
    bytes of Source, DetailType, Detail and each Resources entry."""
    size = 14 if "Time" in entry else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name, "")).encode())
    return size + sum(len(str(r).encode()) for r in entry.get("Resources", []))


def origin(record: ReportRecord) -> str:
    """The region whose write this is: the store stamps every write (written_region); an
    item from before that stamp falls back to the region whose worker ran it."""
    return record.written_region or record.region


def announces(new: ReportRecord, old: ReportRecord | None, *, region: str) -> bool:
    """Whether this change of a report item publishes an event in `region`: it made the
    report terminal (from absent or a live state), and it was written here, not replicated
    from another region (a global table's stream in every region carries every region's
    writes, and version 2019.11.21 marks none of them; the aws:rep:* attributes were the
    legacy version's). A takeover's terminal write is stamped by the region that made it,
    so it publishes there, once."""
    if new.state not in ANNOUNCED:
        return False
    if old is not None and old.state.terminal:
        return False
    return origin(new) == region


def stream_filter_patterns(region: str) -> list[dict[str, Any]]:
    """The table-stream event-source mapping's filters (Lambda event filtering, which for a
    DynamoDB source sees only the `dynamodb` key: docs.aws.amazon.com/lambda/latest/dg/
    with-ddb-filtering.html): report items that became SUCCEEDED, FAILED or CANCELLED (an
    INSERT has no OldImage; a MODIFY from a live state) in a write made in `region`. The
    filters are ORed; `announces` is the same rule, applied again by the function."""
    terminal = [s.value for s in ANNOUNCED]
    key = {resources.PARTITION_KEY: {"S": [{"prefix": resources.REPORT_PREFIX}]}}
    state = records.A_STATE
    written_here: list[dict[str, Any]] = [
        {"written_region": {"S": [region]}},
        # Items written before the store stamped its writes: the region that ran them.
        {"written_region": {"S": [{"exists": False}]}, "region": {"S": [region]}},
    ]
    before: list[dict[str, Any]] = [
        {state: {"S": [{"exists": False}]}},
        {state: {"S": [{"anything-but": terminal}]}},
    ]
    return [
        {"dynamodb": {"NewImage": {**key, state: {"S": terminal}, **where}, "OldImage": old}}
        for where in written_here
        for old in before
    ]


def image_record(image: Mapping[str, Mapping[str, Any]] | None) -> ReportRecord | None:
    """A stream record's image (Lambda's JSON form: binary values base64) as a record."""
    if not image:
        return None
    return records.from_item(_binary_decoded(image))


def _binary_decoded(image: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: ({"B": base64.b64decode(value["B"])} if "B" in value else dict(value))
        for name, value in image.items()
    }
