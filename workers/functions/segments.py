"""X-Ray segments in a report's own trace: the trace the edge put in TaskRecord.trace_header
(reportgrid/tracing.py), continued in the workers so that X-Ray shows Submit -> Kinesis ->
worker -> DynamoDB as one trace (docs/OBSERVABILITY.md, "Traces through the queue").

Two ways out, one document (X-Ray developer guide, "Segment documents"):
- Fargate: one UDP datagram per segment to the daemon sidecar: the header line
  `{"format": "json", "version": 1}` and the document ("Sending segment documents to the
  X-Ray daemon", xray-api-sendingdata). Fire and forget: `sendto` on an unconnected UDP
  socket neither waits for nor learns of a listener (Linux reports ICMP port-unreachable
  to connected sockets only), so a task without a daemon loses only the segments.
- Lambda: PutTraceSegments, once per invocation (`flush`). Lambda's own daemon is for the
  function's segment and its subsegments: "You can't access the function segment directly
  or record work done outside of the handler invocation scope" (Lambda developer guide,
  services-xray), and AWS's SDKs refuse new segments there (aws-xray-sdk-node#379: such
  segments were dropped). A report's segment belongs to the report's trace, not the
  invocation's, so it is uploaded through the API, the documented way for any segment
  document (the execution role holds xray:PutTraceSegments with active tracing).

No aws_xray_sdk recorder: its context is one segment per thread and its Lambda mode refuses
segments of another trace; here one process ends many reports of many traces. A send or an
upload that fails is logged once, not per segment.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from functions.lean_aws import LEAN_CALL_EVENT
from reportgrid import resources, tracing

if TYPE_CHECKING:
    from botocore.client import BaseClient

    from reportgrid.task.v1.task_pb2 import TaskRecord

log = logging.getLogger(__name__)

DAEMON_ADDRESS_ENV: Final = resources.ENV.XRAY_DAEMON_ADDRESS
_HEADER: Final = b'{"format":"json","version":1}\n'
# A segment document is at most 64 kB (X-Ray quotas); a UDP payload on IPv4 at most 65,507
# bytes. Kept under both, header included.
MAX_DOCUMENT_BYTES: Final = 64_000
# Documents per PutTraceSegments call: the X-Ray daemon's own default batch (its
# Processor.BatchSize, 50).
UPLOAD_BATCH: Final = 50
# A trace nobody upstream decided on (the edge mints Root only) is sampled at the X-Ray
# default rule's fixed rate, decided from the trace id itself so that every worker that
# sees the trace decides the same way (no half traces).
DEFAULT_SAMPLE_PERCENT: Final = 5
# The segment document's `origin` for an ECS container (X-Ray segment documents).
ECS_ORIGIN: Final = "AWS::ECS::Container"
# Bounds the AWS-call subsegments of one segment (and so the datagram's size).
MAX_SUBSEGMENTS: Final = 64


def daemon_address(value: str | None) -> tuple[str, int] | None:
    """The daemon's UDP address from AWS_XRAY_DAEMON_ADDRESS, None if unset or malformed."""
    if not value:
        return None
    parts = value.split()
    udp = next((p[4:] for p in parts if p.startswith("udp:")), parts[0])
    host, _, port = udp.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host, int(port)


def is_sampled(context: tracing.TraceContext, percent: int = DEFAULT_SAMPLE_PERCENT) -> bool:
    """The caller's decision when it made one, else a fixed share of trace ids."""
    if context.sampled is not None:
        return context.sampled
    return int(context.trace_id[-6:], 16) % 100 < percent


def _new_id() -> str:
    return f"{tracing._random.getrandbits(64):016x}"  # one id source


@dataclass(slots=True)
class Span:
    """A segment being recorded: annotations and AWS-call subsegments until it is sent."""

    context: tracing.TraceContext
    start_s: float
    id: str = field(default_factory=_new_id)
    annotations: dict[str, str | int | bool] = field(default_factory=dict)
    subsegments: list[dict[str, Any]] = field(default_factory=list)
    error: bool = False
    fault: bool = False


class SegmentSender:
    """Sends each report's segment to the daemon at `address`, or, given `api` (an X-Ray
    client), keeps it for the next `flush`; with neither it records nothing."""

    def __init__(
        self,
        address: tuple[str, int] | None,
        *,
        name: str,
        origin: str | None = None,
        sample_percent: int = DEFAULT_SAMPLE_PERCENT,
        metadata: Mapping[str, Any] | None = None,
        api: BaseClient | None = None,
    ) -> None:
        self._address = address
        self._api = api
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._name = name
        self._origin = origin
        self._percent = sample_percent
        self._metadata = dict(metadata or {})
        self._socket: socket.socket | None = None
        self._warned = False
        self._current = threading.local()  # the Span of the report this thread runs

    @classmethod
    def from_environment(cls, *, name: str, origin: str | None = None) -> SegmentSender:
        return cls(daemon_address(os.environ.get(DAEMON_ADDRESS_ENV)), name=name, origin=origin)

    @classmethod
    def for_lambda(cls, *, name: str, api: Callable[[], BaseClient]) -> SegmentSender:
        """Uploading through `api()` when the function traces: Lambda sets the daemon's
        address only with active tracing on (Lambda developer guide, "Defined runtime
        environment variables")."""
        if daemon_address(os.environ.get(DAEMON_ADDRESS_ENV)) is None:
            return cls(None, name=name)
        return cls(None, name=name, api=api())

    @property
    def enabled(self) -> bool:
        return self._address is not None or self._api is not None

    def start(self, task: TaskRecord, *, start_s: float | None = None) -> Span | None:
        """A span in the task's trace, or None (no daemon, no trace, or not sampled)."""
        if not self.enabled or not task.trace_header:
            return None
        context = tracing.parse_header(task.trace_header)
        if context is None or not is_sampled(context, self._percent):
            return None
        span = Span(context, time.time() if start_s is None else start_s)
        span.annotations.update(
            report_id=task.report_id, tenant=task.tenant, home_region=task.home_region
        )
        return span

    @contextmanager
    def segment(self, task: TaskRecord) -> Iterator[Span | None]:
        """The span of the report this thread runs, sent at the end (a raised error marks
        it as a fault); the AWS calls made meanwhile from this thread become its
        subsegments (instrument)."""
        span = self.start(task)
        previous = getattr(self._current, "span", None)
        self._current.span = span
        try:
            yield span
        except BaseException:
            if span is not None:
                span.fault = True
            raise
        finally:
            self._current.span = previous
            if span is not None:
                self.send(span)

    def document(self, span: Span, *, end_s: float | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self._name,
            "id": span.id,
            "trace_id": span.context.trace_id,
            "start_time": span.start_s,
            "end_time": time.time() if end_s is None else end_s,
            "annotations": span.annotations,
        }
        if span.context.parent_id:
            found["parent_id"] = span.context.parent_id
        if self._origin:
            found["origin"] = self._origin
        if self._metadata:
            found["metadata"] = {"reportgrid": self._metadata}
        if span.error:
            found["error"] = True
        if span.fault:
            found["fault"] = True
        if span.subsegments:
            found["subsegments"] = span.subsegments
        return found

    def send(self, span: Span, *, end_s: float | None = None) -> None:
        if not self.enabled:
            return
        body = self._body(span, end_s)
        if body is None:
            return
        if self._api is not None:
            with self._pending_lock:
                self._pending.append(body)
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._socket.setblocking(False)  # a full send buffer drops, never waits
            assert self._address is not None
            self._socket.sendto(_HEADER + body.encode(), self._address)
        except OSError as err:
            self._warn_once("cannot send X-Ray segments to %s: %s", self._address, err)

    def _body(self, span: Span, end_s: float | None) -> str | None:
        """The document's JSON, its subsegments dropped if it would not fit; None (logged)
        when even that does not fit."""
        limit = MAX_DOCUMENT_BYTES - len(_HEADER)
        body = json.dumps(self.document(span, end_s=end_s), separators=(",", ":"))
        if len(body.encode()) > limit:
            span.subsegments.clear()  # the segment still counts; its calls do not fit
            body = json.dumps(self.document(span, end_s=end_s), separators=(",", ":"))
        if len(body.encode()) > limit:
            self._warn_once("an X-Ray segment of %d bytes is over the limit", len(body))
            return None
        return body

    def flush(self) -> None:
        """Upload the segments kept since the last flush (the API path; a no-op for UDP)."""
        if self._api is None:
            return
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for i in range(0, len(pending), UPLOAD_BATCH):
            chunk = pending[i : i + UPLOAD_BATCH]
            try:
                call = self._api.put_trace_segments  # type: ignore[attr-defined]
                answer: dict[str, Any] = call(TraceSegmentDocuments=chunk)
            except Exception as err:
                self._warn_once("cannot upload %d X-Ray segments: %s", len(chunk), err)
                continue
            if unprocessed := answer.get("UnprocessedTraceSegments"):
                self._warn_once("X-Ray refused %d segments: %s", len(unprocessed), unprocessed[0])

    def _warn_once(self, message: str, *args: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message, *args)

    # -- AWS calls as subsegments -----------------------------------------------------------

    def instrument(self, *clients: Any) -> None:
        """Record each call of these boto3 clients, made from a thread running a report
        (segment()), as a subsegment of its span: botocore's before-call/after-call events,
        two dict writes per call (no aws_xray_sdk patching of every client in the process,
        which would log a missing segment for each poll and heartbeat). The calls the lean
        clients make for them (functions/lean_aws.py) are announced on the same emitter."""
        if not self.enabled:
            return
        for client in clients:
            events = client.meta.events
            events.register("before-call.*.*", self._before_call)
            events.register("after-call.*.*", self._after_call)
            events.register(f"{LEAN_CALL_EVENT}.*.*", self._lean_call)

    def _before_call(self, context: dict[str, Any], **_: Any) -> None:
        if getattr(self._current, "span", None) is not None:
            context["xray_start_s"] = time.time()

    def _after_call(
        self, http_response: Any, model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        start = context.pop("xray_start_s", None)
        if start is not None:
            status = int(getattr(http_response, "status_code", 0) or 0)
            # "DynamoDB", "S3", "SQS"
            self._record(str(model.service_model.service_id), model.name, start, status)

    def _lean_call(
        self, service_id: str, operation: str, start_s: float, status: int, **_: Any
    ) -> None:
        """A call the lean client made for one of these boto3 clients (lean_aws.py)."""
        if getattr(self._current, "span", None) is not None:
            self._record(service_id, operation, start_s, status)

    def _record(self, service_id: str, operation: str, start: float, status: int) -> None:
        span: Span | None = getattr(self._current, "span", None)
        if span is None or len(span.subsegments) >= MAX_SUBSEGMENTS:
            return
        call: dict[str, Any] = {
            "id": _new_id(),
            "name": service_id,
            "namespace": "aws",
            "start_time": start,
            "end_time": time.time(),
            "aws": {"operation": operation},
            "http": {"response": {"status": status}},
        }
        if status == 429:  # X-Ray's throttle flag
            call["throttle"] = True
        if 400 <= status < 500:
            call["error"] = True
        elif status >= 500:
            call["fault"] = True
        span.subsegments.append(call)
