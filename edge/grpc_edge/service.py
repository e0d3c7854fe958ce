"""The ReportService handlers. Each takes the parsed request and the `Call` (tenant and
deadline, resolved by the interceptors) and returns a response or raises a Reportgrid error;
the interceptors turn errors into statuses. What a handler needs beyond a few lines lives
in its own module: listing (grpc_edge/listing.py), stored results (result_storage.py) and
their download stream (download.py), reads (reads.py), watches (watch.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Final

from grpc_edge import idempotency
from grpc_edge.audit_log import AuditLog
from grpc_edge.cache import RedisTier
from grpc_edge.call import Call
from grpc_edge.download import check_read_offset, download_chunks, set_download_uri, uri_chunk
from grpc_edge.idempotency import ClaimStore
from grpc_edge.listing import ReportLister
from grpc_edge.peer import PeerSender, send_both
from grpc_edge.producer import TaskProducer
from grpc_edge.quotas import apply_quotas
from grpc_edge.ratelimit import FleetRateLimiter
from grpc_edge.reads import ReportReader, now_ms, view_missing
from grpc_edge.result_storage import ResultStorage
from grpc_edge.store import ReportStore
from grpc_edge.views import is_full
from grpc_edge.watch import EventHub, watch_report
from reportgrid import intents, records, tasks, tracing
from reportgrid.engine.registry import Registry
from reportgrid.errors import FailedPrecondition, NotFound, Unavailable
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.tenants import Quotas
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy, validate_submit_on_loop

# Releasing a claim made too late to enqueue may take this long, the call's time being up.
RELEASE_SECONDS: Final = 0.5


class ReportService:
    def __init__(
        self,
        *,
        settings: Settings,
        registry: Registry,
        store: ReportStore,
        reader: ReportReader,
        redis: RedisTier,
        hub: EventHub,
        producer: TaskProducer,
        lister: ReportLister,
        results: ResultStorage,
        quotas: Callable[[str], Quotas | None],
        submit_limiter: FleetRateLimiter,
        audit: AuditLog,
        claims: ClaimStore,
        peer: PeerSender | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.codec = settings.id_codec()
        self.store = store
        self.reader = reader
        self.redis = redis
        self.hub = hub
        self.producer = producer
        self.lister = lister
        self.results = results
        # The peer region's standby queue (DURABILITY_MULTI_REGION); None without a peer.
        self.peer = peer
        self.quotas = quotas  # the tenant's, None for a tenant without an item
        self.submit_limiter = submit_limiter
        self.audit = audit
        self.claims = claims  # idempotency keys' claim items
        self._kinds = registry.to_proto()
        self.inputs = InputPolicy.of(
            settings.input_buckets, loopback_webhooks=settings.webhook_allow_loopback
        )

    # -- SubmitReport: the hot path --------------------------------------------------------

    async def submit(self, request: pb.SubmitReportRequest, call: Call) -> pb.SubmitReportResponse:
        await validate_submit_on_loop(
            request, self.registry, tenant=call.tenant, inputs=self.inputs
        )
        key = request.idempotency_key
        # The request as the client sent it: before the quotas fill defaults in.
        fingerprint = idempotency.fingerprint(request) if key else None
        quotas = self.quotas(call.tenant)
        if quotas is not None:
            apply_quotas(request, quotas)
            await self.submit_limiter.admit(call.tenant, quotas.submit_per_second, call.remaining())
        multi_region = request.durability == pb.DURABILITY_MULTI_REGION
        if multi_region and self.peer is None:
            # Accepting the request with regional durability would silently weaken what
            # the caller asked for.
            raise FailedPrecondition(
                "durability",
                "DURABILITY_MULTI_REGION cannot be honoured: this region has no peer "
                "standby queue configured; use DURABILITY_REGIONAL or leave durability unset",
                type_="DURABILITY",
            )
        report_id = self.codec.new(call.tenant, self.settings.region)
        rid = report_id.value
        claimed = None
        if fingerprint is not None:
            # Claim first, enqueue after: a key reused with another request is refused
            # before anything is enqueued (grpc_edge/idempotency.py).
            claimed = await self.claims.claim(
                call.tenant,
                key,
                fingerprint.value,
                report_id=rid,
                created_ms=report_id.created_ms,
                deadline=call.deadline,
            )
            if not fingerprint.matches(claimed.claim.fingerprint):
                raise idempotency.reused(key, claimed.claim)
            rid = claimed.claim.report_id
        task = TaskRecord(
            report_id=rid,
            tenant=call.tenant,
            home_region=self.settings.region,
            request=request,
            trace_header=tracing.task_header(call.metadata),
        )
        # A copy of the parsed request, not its wire bytes: the copy and its serialization
        # are C (upb), 2.2 us per Submit, and writing the record from the received bytes
        # saved nothing measurable (docs/PERFORMANCE.md, the edge's cost by cause).
        task.accept_time.FromMilliseconds(now_ms())
        if claimed is not None and claimed.fresh and call.remaining() <= 0:
            # The claim took the whole deadline and nothing was sent: the task is certainly
            # not written, so the key must not stay bound to a report that never runs.
            # The release gets RELEASE_SECONDS, the client's patience being gone.
            await self.claims.release(call.tenant, key, rid, time.monotonic() + RELEASE_SECONDS)
            raise Unavailable("the idempotency key's claim took the call's whole deadline; retry")
        # A failed enqueue keeps a fresh claim: the task may be written all the same (a
        # PutRecords whose answer was lost, one of the two multi-region sends done), and a
        # retry must get this id (deduplicated) so that it stays one report.
        await self._enqueue(task, rid, multi_region, call)
        if claimed is None or claimed.fresh:
            return pb.SubmitReportResponse(report_id=rid, state=pb.REPORT_STATE_PENDING)
        # An earlier call with this key and this request claimed the id: enqueued again
        # anyway (that call's enqueue may have failed after its claim), harmless because
        # the workers' conditional writes make every task of one id one report.
        return pb.SubmitReportResponse(
            report_id=rid, state=self._known_state(rid), deduplicated=True
        )

    async def _enqueue(self, task: TaskRecord, rid: str, multi_region: bool, call: Call) -> None:
        # The report id as partition key spreads tasks evenly over the shards.
        if multi_region and self.peer is not None:
            # Acknowledged only once both the local log and the peer's standby queue
            # hold it (grpc_edge/peer.py); the two sends run side by side.
            await send_both(
                self.producer.put(tasks.encode(task), rid, call.deadline),
                self.peer.send(task, call.deadline),
            )
        else:
            await self.producer.put(tasks.encode(task), rid, call.deadline)

    def _known_state(self, report_id: str) -> pb.ReportState.ValueType:
        record = self.reader.lru.get(report_id)
        if record is None:
            return pb.REPORT_STATE_PENDING
        return records.state_to_proto(record.effective_state(now_ms()))

    # -- reads ---------------------------------------------------------------------------

    async def get(self, request: pb.GetReportRequest, call: Call) -> pb.Report | bytes:
        # Hot terminal reports: the reply as serialized last time (see TerminalLru.reply).
        # Only valid views are ever cached, so a bad one misses and is refused below.
        reply = self.reader.cached_reply(
            call.tenant,
            request.report_id,
            request.include_content,
            request.view == pb.REPORT_VIEW_FULL,
        )
        if reply is not None and not request.include_download_uri:
            return reply
        full = is_full(request.view)
        report_id = self.codec.verify(call.tenant, request.report_id)
        record = await self.reader.lookup(call.tenant, report_id.value, call.deadline)
        if record is None:
            return view_missing(report_id)
        rendered = self.reader.render(record, request.include_content, full=full)
        if request.include_download_uri and record.result is not None:
            # Asked for only: a URL is new on every call, so this reply is never cached.
            report = rendered if isinstance(rendered, pb.Report) else pb.Report.FromString(rendered)
            if report.HasField("result") and (link := await self.results.presign(record.result)):
                set_download_uri(report.result, *link)
            return report
        return rendered

    async def watch(
        self, request: pb.WatchReportRequest, call: Call
    ) -> AsyncIterator[pb.WatchReportResponse]:
        # `call` carries the stream's own budget (Chain.stream with long_lived=True).
        full = is_full(request.view)
        report_id = self.codec.verify(call.tenant, request.report_id)
        async for response in watch_report(
            call.tenant,
            report_id,
            self.reader,
            self.hub,
            call.remaining,
            heartbeat_seconds=self.settings.watch_heartbeat_seconds,
            full=full,
        ):
            yield response

    async def list_reports(
        self, request: pb.ListReportsRequest, call: Call
    ) -> pb.ListReportsResponse:
        return await self.lister.page(request, call)

    # -- writes --------------------------------------------------------------------------

    async def cancel(self, request: pb.CancelReportRequest, call: Call) -> pb.Report:
        """Record the cancel request in its own item (reportgrid/intents.py); the worker
        that runs (or would start) the report ends it CANCELLED. A terminal report is
        returned unchanged: a cancel after the end has nothing to stop."""
        report_id = self.codec.verify(call.tenant, request.report_id)
        rid = report_id.value
        record = await self.reader.lookup(call.tenant, rid, call.deadline, fresh=True)
        if record is None:
            view_missing(report_id)  # NotFound when the id is too old to be queued
        elif record.effective_state(now_ms()).terminal or record.cancel_requested:
            await self.audit.record(call, "report.cancel", report_id=rid, changed=False)
            return records.to_proto(record, now_ms=now_ms())
        await self.store.put_cancel(
            rid, call.tenant, created_ms=report_id.created_ms, deadline=call.deadline
        )
        cancel = intents.CancelRequest(call.tenant, now_ms(), report_id.created_ms)
        view = intents.Snapshot(rid, record, cancel).view()
        assert view is not None
        # The cached live record does not know of the request; watchers learn it now.
        await self.redis.evict(rid, call.remaining())
        await self.redis.publish(view, call.remaining())
        await self.audit.record(call, "report.cancel", report_id=rid, changed=True)
        return records.to_proto(view, now_ms=now_ms())

    async def delete(self, request: pb.DeleteReportRequest, call: Call) -> pb.DeleteReportResponse:
        report_id = self.codec.verify(call.tenant, request.report_id)
        rid = report_id.value
        try:
            record = await self.reader.lookup(call.tenant, rid, call.deadline, fresh=True)
            if record is None:
                view_missing(report_id)  # NotFound when too old to be still queued
        except NotFound:
            if request.allow_missing:
                await self.audit.record(call, "report.delete", report_id=rid, changed=False)
                return pb.DeleteReportResponse(report_id=rid)
            raise
        # The stored result first: if that fails nothing has changed and a retry is safe.
        # Then the tombstone, which hides the report from every reader and stops every
        # worker (a run that stores its result after this removes it again), and the item.
        if record is not None and record.result is not None and record.result.s3_key:
            await self.results.delete(record.result.s3_key, call.deadline)
        await self.store.delete_report(rid, call.tenant, deadline=call.deadline)
        self.reader.forget(rid)
        await self.redis.evict(rid, call.remaining())
        await self.audit.record(call, "report.delete", report_id=rid, changed=True)
        return pb.DeleteReportResponse(report_id=rid)

    # -- download ------------------------------------------------------------------------

    async def download(
        self, request: pb.DownloadReportRequest, call: Call
    ) -> AsyncIterator[pb.DownloadReportChunk]:
        report_id = self.codec.verify(call.tenant, request.report_id)
        rid = report_id.value
        record = await self.reader.lookup(call.tenant, rid, call.deadline)
        state = State.PENDING if record is None else record.effective_state(now_ms())
        if record is None:
            view_missing(report_id)
        if record is None or state is not State.SUCCEEDED or record.result is None:
            hint = (
                "its result has expired and is gone"
                if state is State.EXPIRED
                else "download it after it has SUCCEEDED"
            )
            raise FailedPrecondition(f"report/{rid}", f"the report is {state.value}; {hint}")
        metadata = pb.ResultMetadata()
        metadata.CopyFrom(records.to_proto(record, now_ms=now_ms()).result)
        check_read_offset(request.read_offset, record.result.size_bytes)
        if request.prefer_uri and (link := await self.results.presign(record.result)):
            set_download_uri(metadata, *link)
            yield uri_chunk(metadata, request.read_offset)
            return
        offset = request.read_offset
        pieces = self.results.read(record.result, rid, call.deadline, offset=offset)
        async for chunk in download_chunks(metadata, pieces, start=offset):
            yield chunk

    async def list_kinds(
        self, request: pb.ListReportKindsRequest, call: Call
    ) -> pb.ListReportKindsResponse:
        return self._kinds
