"""The trace context a report carries from the edge through the task log and the queues to
the workers, and the fields of every log line about a report.

Format: the X-Ray trace header, `Root=1-<8 hex epoch s>-<24 hex>;Parent=<16 hex>;Sampled=1`
(docs/OBSERVABILITY.md says why X-Ray and not W3C/OpenTelemetry). The edge takes the
caller's `x-amzn-trace-id` or W3C `traceparent` metadata (the two ids map one to one: the
W3C trace id is the X-Ray id's 8 + 24 hex digits) or mints one, and writes the header into
TaskRecord.trace_header; the workers log its Root as `trace_id` on every report line and
send their segments in its trace (functions/segments.py).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from reportgrid.task.v1.task_pb2 import TaskRecord

XRAY_METADATA: Final = "x-amzn-trace-id"
W3C_METADATA: Final = "traceparent"
_ROOT: Final = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
_PARENT: Final = re.compile(r"[0-9a-f]{16}")
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# A trace header is short; anything longer is not one (and must not bloat the task).
MAX_HEADER: Final = 256
# Not secret, only unique: random.getrandbits is ~10x cheaper than os.urandom + hex.
_random: Final = random.Random()  # noqa: S311 -- ids, not secrets


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # X-Ray form, "1-5759e988-bd862e3fe1be46a994272793"
    parent_id: str = ""  # the caller's segment/span, 16 hex; "" when minted here
    sampled: bool | None = None  # None: not decided upstream, the next tracer decides

    def header(self) -> str:
        parts = [f"Root={self.trace_id}"]
        if self.parent_id:
            parts.append(f"Parent={self.parent_id}")
        if self.sampled is not None:
            parts.append(f"Sampled={int(self.sampled)}")
        return ";".join(parts)


def mint(now_s: float | None = None) -> TraceContext:
    seconds = int(time.time() if now_s is None else now_s)
    return TraceContext(f"1-{seconds:08x}-{_random.getrandbits(96):024x}")


def parse_header(value: str) -> TraceContext | None:
    """An X-Ray trace header, or None when it is not one (never raises: the context is a
    diagnostic aid, a bad one from a caller must not fail the call)."""
    if len(value) > MAX_HEADER:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in value.split(";") if "=" in part)
    root = fields.get("Root", "").lower()
    parent = fields.get("Parent", "").lower()
    if not _ROOT.fullmatch(root) or (parent and not _PARENT.fullmatch(parent)):
        return None
    sampled = {"1": True, "0": False}.get(fields.get("Sampled", ""))
    return TraceContext(root, parent, sampled)


def parse_traceparent(value: str) -> TraceContext | None:
    """A W3C traceparent (version 00) as the X-Ray context of the same trace."""
    found = _TRACEPARENT.fullmatch(value.strip().lower())
    if found is None or set(found[1]) == {"0"} or set(found[2]) == {"0"}:
        return None
    trace, parent, flags = found.groups()
    return TraceContext(f"1-{trace[:8]}-{trace[8:]}", parent, bool(int(flags, 16) & 1))


def from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> TraceContext:
    """The caller's context if it sent one (X-Ray's header before a W3C traceparent),
    else a fresh one."""
    w3c = None
    for key, value in metadata or ():
        if key == XRAY_METADATA and isinstance(value, str):
            if (found := parse_header(value)) is not None:
                return found
        elif key == W3C_METADATA and isinstance(value, str) and w3c is None:
            w3c = parse_traceparent(value)
    return w3c or mint()


def task_header(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The header the edge writes into the task: from_metadata(...).header(), with the
    common case (the caller sent no context) done without building a TraceContext."""
    for key, _ in metadata or ():
        if key in {XRAY_METADATA, W3C_METADATA}:
            return from_metadata(metadata).header()
    return f"Root=1-{int(time.time()):08x}-{_random.getrandbits(96):024x}"


def trace_id(task: TaskRecord) -> str:
    """The task's trace id ("" for a task written before the field existed)."""
    found = parse_header(task.trace_header) if task.trace_header else None
    return found.trace_id if found else ""


# The report item's attribute holding the trace id (a ReportRecord keeps an attribute it
# does not know in `extra` and writes it back), so that what is made from the item alone
# -- the completion event, its webhook deliveries -- can name the trace.
ITEM_ATTRIBUTE: Final = "trace_id"


def item_attributes(task: TaskRecord) -> dict[str, dict[str, str]]:
    """The attribute to store on the report's first write ({} for a task without one)."""
    found = trace_id(task)
    return {ITEM_ATTRIBUTE: {"S": found}} if found else {}


def stored_trace_id(extra: Mapping[str, Mapping[str, object]]) -> str | None:
    """The trace id a report item holds (ReportRecord.extra), if it is one."""
    value = extra.get(ITEM_ATTRIBUTE, {}).get("S")
    return value if isinstance(value, str) and _ROOT.fullmatch(value) else None


def time_to_terminal_ms(task: TaskRecord, now_ms: int | None = None) -> int | None:
    """Milliseconds from the edge's acceptance to now, the `time_to_terminal_ms` of a
    terminal line (the slowest-reports query reads it); None for a task without
    accept_time."""
    if not task.HasField("accept_time"):
        return None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return max(0, now - task.accept_time.ToMilliseconds())


def report_fields(task: TaskRecord, event: str, **extra: object) -> dict[str, object]:
    """The fields of a log line about the report (reportgrid/cli/log_queries.py
    REPORT_FIELDS): Powertools loggers take them as `extra=`."""
    return {
        "event": event,
        "report_id": task.report_id,
        "tenant": task.tenant,
        "home_region": task.home_region,
        "trace_id": trace_id(task),
        **extra,
    }


def log_step(
    log: logging.Logger, event: str, task: TaskRecord, *, text: str = "", **extra: object
) -> None:
    """A plain-text logger's line about the report: `<text or event> {json fields}`, which
    `reportgrid trace` and Logs Insights (`parse @message`) both read."""
    if log.isEnabledFor(logging.INFO):
        fields = report_fields(task, event, **extra)
        log.info("%s %s", text or event, json.dumps(fields, separators=(",", ":"), default=str))
