"""The report item in the global table, and its mapping to the API's `Report`.

Items are in DynamoDB's low-level form ({"S": ...}), which both boto3's client and
aioboto3's take, so the workers (sync) and the edge (async) share this one mapping.
Attribute names are the constants below; every writer uses them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from reportgrid import outcomes, resources
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb

# A result at most this large is returned inline by GetReport(include_content=True).
MAX_INLINE_CONTENT_BYTES: Final = 256 * 1024

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]
# An item as read: what boto3's and aioboto3's typed replies both are (read only).
ReadItem = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class ResultInfo:
    size_bytes: int
    content_type: str
    sha256: str
    row_count: int
    generator_version: int
    # Exactly one of these holds the bytes: zlib-compressed inline, or an S3 object key.
    inline_compressed: bytes | None = None
    s3_key: str | None = None
    # The region whose bucket holds the S3 object.
    s3_region: str | None = None


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """One report as stored. Times are epoch milliseconds."""

    report_id: str
    tenant: str
    kind: str
    state: State
    created_ms: int
    output_format: int = pb.OUTPUT_FORMAT_CSV
    home_region: str = ""
    region: str = ""  # the region whose worker ran (or runs) it
    # The region that made the item's latest write (functions/store.py stamps every write):
    # a global table's stream in each region also carries the writes replicated from the
    # others, and the events function publishes only the ones made here (docs/EVENTS.md).
    written_region: str = ""
    started_ms: int | None = None
    ended_ms: int | None = None
    expires_at: int | None = None  # epoch seconds (the table's TTL attribute)
    attempts: int = 0
    lease_owner: str | None = None
    lease_until_ms: int | None = None
    cancel_requested: bool = False
    forwarded: bool = False  # handed to the heavy queue
    idempotency_key: str = ""
    # The request's webhook (SubmitReportRequest.notify.url, validated by the edge): the
    # completion event carries it, and the webhook function POSTs there (docs/USAGE.md).
    notify_url: str = ""
    error_reason: str = ""
    error_message: str = ""
    result: ResultInfo | None = None
    # SubmitReportRequest.labels (a map attribute, so ListReports can filter on it).
    labels: dict[str, str] = field(default_factory=dict)
    # The zlib-compressed serialized pb.ReportSpec (request_spec): returned by
    # REPORT_VIEW_FULL only, so a BASIC read never decompresses or parses it.
    spec: bytes | None = None
    # Incremented by every write; conditions on it make writes from two regions and
    # read-modify-write cycles safe (see docs/MULTI_REGION.md).
    revision: int = 0
    extra: dict[str, AttributeValue] = field(default_factory=dict)

    def with_(self, **changes: Any) -> ReportRecord:
        return replace(self, **changes)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def effective_state(self, now_ms: int) -> State:
        """EXPIRED once a terminal report's retention passed, before DynamoDB's TTL sweep
        (which can lag by a day or more) removes the item."""
        if self.terminal and self.expires_at is not None and now_ms >= self.expires_at * 1000:
            return State.EXPIRED
        return self.state


# Attribute names: one place.
A_STATE: Final = "state"
A_REVISION: Final = "revision"
A_LEASE_UNTIL: Final = "lease_until_ms"
A_LEASE_OWNER: Final = "lease_owner"
A_CANCEL: Final = "cancel_requested"
A_FORWARDED: Final = "forwarded"
A_ATTEMPTS: Final = "attempts"
A_LABELS: Final = "labels"
A_SPEC: Final = "spec"
# When the report's retention ends (EXPIRED from then on). The item itself lives at least
# until its id's task could no longer be in the task log: the edge answers a verified id
# with no item PENDING while it is younger than that (grpc_edge/reads.py view_missing), so
# an item TTL-deleted sooner (a 1-minute ttl) would make a finished report PENDING again.
A_EXPIRES: Final = "report_expires_at"
_ITEM_MIN_LIFE_SECONDS: Final = (resources.TASK_RETENTION_HOURS + 1) * 3600

_RESULT_PREFIX: Final = "result_"


def _s(value: str) -> AttributeValue:
    return {"S": value}


def _n(value: int) -> AttributeValue:
    return {"N": str(value)}


def to_item(record: ReportRecord) -> Item:
    """The full item for a put."""
    item: Item = {
        **{k: _s(v) for k, v in resources.report_key(record.report_id).items()},
        "report_id": _s(record.report_id),
        "tenant": _s(record.tenant),
        "kind": _s(record.kind),
        A_STATE: _s(record.state.value),
        "created_ms": _n(record.created_ms),
        "output_format": _n(record.output_format),
        A_ATTEMPTS: _n(record.attempts),
        A_CANCEL: {"BOOL": record.cancel_requested},
        A_FORWARDED: {"BOOL": record.forwarded},
        A_REVISION: _n(record.revision),
        resources.TENANT_INDEX_PARTITION_KEY: _s(
            resources.tenant_shard(record.tenant, tenant_shard_of(record.report_id))
        ),
        resources.TENANT_INDEX_SORT_KEY: _s(
            resources.created_key(record.created_ms, record.report_id)
        ),
    }
    for name in (
        "home_region",
        "region",
        "written_region",
        "idempotency_key",
        "notify_url",
        "error_reason",
        "error_message",
        A_LEASE_OWNER,
    ):
        value = getattr(record, name)
        if value:
            item[name] = _s(value)
    for name in ("started_ms", "ended_ms", A_LEASE_UNTIL):
        value = getattr(record, name)
        if value is not None:
            item[name] = _n(value)
    if record.expires_at is not None:
        item[A_EXPIRES] = _n(record.expires_at)
        item[resources.TTL_ATTRIBUTE] = _n(
            max(record.expires_at, record.created_ms // 1000 + _ITEM_MIN_LIFE_SECONDS)
        )
    if record.labels:
        item[A_LABELS] = {"M": {k: _s(v) for k, v in record.labels.items()}}
    if record.spec is not None:
        item[A_SPEC] = {"B": record.spec}
    if record.result is not None:
        item.update(_result_item(record.result))
    item.update(record.extra)
    return item


def _result_item(result: ResultInfo) -> Item:
    item: Item = {}
    for f in fields(result):
        value = getattr(result, f.name)
        if value is None:
            continue
        name = _RESULT_PREFIX + f.name
        if isinstance(value, bytes):
            item[name] = {"B": value}
        elif isinstance(value, int):
            item[name] = _n(value)
        else:
            item[name] = _s(value)
    return item


_RECORD_FIELDS: Final = {f.name for f in fields(ReportRecord)}
_RESULT_FIELDS: Final = {f.name: f for f in fields(ResultInfo)}
_KNOWN: Final = (
    _RECORD_FIELDS
    | {
        resources.PARTITION_KEY,
        resources.TTL_ATTRIBUTE,
        A_EXPIRES,
        resources.TENANT_INDEX_PARTITION_KEY,
        resources.TENANT_INDEX_SORT_KEY,
    }
    | {_RESULT_PREFIX + name for name in _RESULT_FIELDS}
)


def _plain(value: Mapping[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        return int(value["N"])
    if "BOOL" in value:
        return value["BOOL"]
    if "B" in value:
        return bytes(value["B"])
    if "NULL" in value:
        return None
    if "M" in value:
        return {k: _plain(v) for k, v in value["M"].items()}
    raise ValueError(f"unsupported attribute value {value!r}")


def from_item(item: ReadItem) -> ReportRecord:
    values = {k: _plain(v) for k, v in item.items() if k in _KNOWN and k not in ("extra",)}
    result_values = {
        name.removeprefix(_RESULT_PREFIX): value
        for name, value in values.items()
        if name.startswith(_RESULT_PREFIX)
    }
    result = ResultInfo(**result_values) if "sha256" in result_values else None
    kwargs = {k: v for k, v in values.items() if k in _RECORD_FIELDS and k != "result"}
    kwargs["state"] = State(kwargs["state"])
    # Items written before A_EXPIRES existed carry the expiry in the TTL attribute only.
    kwargs["expires_at"] = values.get(A_EXPIRES, values.get(resources.TTL_ATTRIBUTE))
    extra = {k: dict(v) for k, v in item.items() if k not in _KNOWN}
    return ReportRecord(**kwargs, result=result, extra=extra)


def tenant_shard_of(report_id: str) -> int:
    """Which tenant-index shard a report lives in: stable, and even over ids."""
    return zlib.crc32(report_id.encode()) % resources.TENANT_INDEX_SHARDS


def _timestamp(ms: int | None) -> Timestamp | None:
    if ms is None:
        return None
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


CONTENT_TYPES: Final = {
    pb.OUTPUT_FORMAT_CSV: "text/csv",
    pb.OUTPUT_FORMAT_JSON: "application/json",
    pb.OUTPUT_FORMAT_PARQUET: "application/vnd.apache.parquet",
    pb.OUTPUT_FORMAT_MARKDOWN: "text/markdown",
}


def request_spec(request: pb.SubmitReportRequest, *, kind_version: int, ttl_seconds: int) -> bytes:
    """ReportRecord.spec of a report submitted with `request` (validated): what FULL views
    echo beyond the record's own fields. Inline input by its size and SHA-256 only."""
    spec = pb.ReportSpec(
        kind_version=kind_version,
        durability=request.durability or pb.DURABILITY_REGIONAL,
    )
    spec.ttl.seconds = ttl_seconds
    if request.HasField("params"):
        spec.params.CopyFrom(request.params)
    source = request.input.WhichOneof("source") if request.HasField("input") else None
    if source is not None:
        spec.input.format = request.input.format
        if source == "s3_uri":
            spec.input.s3_uri = request.input.s3_uri
        else:
            data = request.input.inline_data
            spec.input.inline.size_bytes = len(data)
            spec.input.inline.sha256 = hashlib.sha256(data).hexdigest()
    return zlib.compress(spec.SerializeToString())


def to_proto(
    record: ReportRecord, *, now_ms: int, include_content: bool = False, full: bool = False
) -> pb.Report:
    """The API view of a record: BASIC, or FULL (`full`: with its spec). Inline content only
    when asked for and small enough."""
    state = record.effective_state(now_ms)
    report = pb.Report(
        report_id=record.report_id,
        kind=record.kind,
        state=_STATE_TO_PROTO[state],
        output_format=record.output_format,  # type: ignore[arg-type]
        attempts=record.attempts,
        region=record.region,
        cancel_requested=record.cancel_requested,
        idempotency_key=record.idempotency_key,
    )
    for name, ms in (
        ("create_time", record.created_ms),
        ("start_time", record.started_ms),
        ("end_time", record.ended_ms),
        ("expire_time", None if record.expires_at is None else record.expires_at * 1000),
    ):
        ts = _timestamp(ms)
        if ts is not None:
            getattr(report, name).CopyFrom(ts)
    if record.labels:
        report.labels.update(record.labels)
    if full and record.spec is not None:
        report.spec.ParseFromString(zlib.decompress(record.spec))
    error = outcomes.report_status(
        state, ended_state=record.state, reason=record.error_reason, message=record.error_message
    )
    if error is not None:
        report.error.CopyFrom(error)
    if record.result is not None and state is State.SUCCEEDED:
        r = record.result
        meta = report.result
        meta.size_bytes = r.size_bytes
        meta.content_type = r.content_type
        meta.sha256 = r.sha256
        meta.row_count = r.row_count
        meta.generator_version = r.generator_version
        small = r.size_bytes <= MAX_INLINE_CONTENT_BYTES and r.inline_compressed is not None
        meta.download_required = not small
        if include_content and small and r.inline_compressed is not None:
            meta.content = zlib.decompress(r.inline_compressed)
    return report


_STATE_TO_PROTO: Final = {
    State.PENDING: pb.REPORT_STATE_PENDING,
    State.RUNNING: pb.REPORT_STATE_RUNNING,
    State.SUCCEEDED: pb.REPORT_STATE_SUCCEEDED,
    State.FAILED: pb.REPORT_STATE_FAILED,
    State.CANCELLED: pb.REPORT_STATE_CANCELLED,
    State.EXPIRED: pb.REPORT_STATE_EXPIRED,
}
STATE_FROM_PROTO: Final = {v: k for k, v in _STATE_TO_PROTO.items()}


def state_to_proto(state: State) -> pb.ReportState.ValueType:
    return _STATE_TO_PROTO[state]


def pending_report(report_id: str, *, created_ms: int | None, kind: str = "") -> pb.Report:
    """The view of an accepted report that no worker has recorded yet."""
    report = pb.Report(report_id=report_id, kind=kind, state=pb.REPORT_STATE_PENDING)
    ts = _timestamp(created_ms)
    if ts is not None:
        report.create_time.CopyFrom(ts)
    return report


# --- The cache encoding: how a record travels through Redis (cache values and the Watch
# pub/sub messages alike). JSON of the low-level item, bytes as base64.


def encode_record(record: ReportRecord) -> bytes:
    return json.dumps(
        {
            k: ({"B": base64.b64encode(v["B"]).decode()} if "B" in v else v)
            for k, v in to_item(record).items()
        },
        separators=(",", ":"),
    ).encode()


def decode_record(data: bytes | str) -> ReportRecord:
    raw = json.loads(data)
    return from_item(
        {k: ({"B": base64.b64decode(v["B"])} if "B" in v else v) for k, v in raw.items()}
    )
