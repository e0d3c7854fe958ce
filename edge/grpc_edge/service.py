"""The ReportService handlers. Each takes the parsed request and the `Call` (tenant and
deadline, resolved by the interceptors) and returns a response or raises a Reportgrid error;
the interceptors turn errors into statuses. What a handler needs beyond a few lines lives
in its own module: listing (grpc_edge/listing.py), stored results (result_storage.py) and
their download stream (download.py), reads (reads.py), watches (watch.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from grpc_edge.audit_log import AuditLog
from grpc_edge.cache import RedisTier
from grpc_edge.call import Call
from grpc_edge.download import download_chunks
from grpc_edge.listing import ReportLister
from grpc_edge.peer import PeerSender, send_both
from grpc_edge.producer import TaskProducer
from grpc_edge.quotas import apply_quotas
from grpc_edge.ratelimit import FleetRateLimiter
from grpc_edge.reads import ReportReader, now_ms, view_missing
from grpc_edge.result_storage import ResultStorage
from grpc_edge.store import ReportStore
from grpc_edge.watch import EventHub, watch_report
from reportgrid import intents, records, tasks
from reportgrid.engine.registry import Registry
from reportgrid.errors import FailedPrecondition, NotFound
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.tenants import Quotas
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy, validate_submit_on_loop


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
        self._kinds = registry.to_proto()
        self.inputs = InputPolicy.of(settings.input_buckets)

    # -- SubmitReport: the hot path --------------------------------------------------------

    async def submit(self, request: pb.SubmitReportRequest, call: Call) -> pb.SubmitReportResponse:
        await validate_submit_on_loop(
            request, self.registry, tenant=call.tenant, inputs=self.inputs
        )
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
        key = request.idempotency_key or None
        report_id = self.codec.new(call.tenant, self.settings.region, idempotency_key=key)
        rid = report_id.value
        task = TaskRecord(
            report_id=rid,
            tenant=call.tenant,
            home_region=self.settings.region,
            request=request,
        )
        # A copy of the parsed request, not its wire bytes: the copy and its serialization
        # are C (upb), 2.2 us per Submit, and writing the record from the received bytes
        # saved nothing measurable (docs/PERFORMANCE.md, the edge's cost by cause).
        task.accept_time.FromMilliseconds(now_ms())
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
        if key is None:
            return pb.SubmitReportResponse(report_id=rid, state=pb.REPORT_STATE_PENDING)
        # A keyed submit costs one Redis round trip: SET NX once Kinesis holds the task.
        # A retry of a key already accepted is enqueued again and answered deduplicated
        # here; its second task is harmless, because the workers' conditional writes make
        # every task of one id one report (the same holds with Redis down). Marking only
        # after the enqueue succeeded means a deduplicated answer never stands for a task
        # that was lost. (Checking first, EXISTS before the enqueue, would save the
        # duplicate record but cost every keyed Submit a second round trip.)
        first = await self.redis.mark_submit(rid, call.remaining())
        return pb.SubmitReportResponse(
            report_id=rid,
            state=pb.REPORT_STATE_PENDING if first else self._known_state(rid),
            deduplicated=not first,
        )

    def _known_state(self, report_id: str) -> pb.ReportState.ValueType:
        record = self.reader.lru.get(report_id)
        if record is None:
            return pb.REPORT_STATE_PENDING
        return records.state_to_proto(record.effective_state(now_ms()))

    # -- reads ---------------------------------------------------------------------------

    async def get(self, request: pb.GetReportRequest, call: Call) -> pb.Report | bytes:
        # Hot terminal reports: the reply as serialized last time (see TerminalLru.reply).
        reply = self.reader.cached_reply(call.tenant, request.report_id, request.include_content)
        if reply is not None:
            return reply
        report_id = self.codec.verify(call.tenant, request.report_id)
        record = await self.reader.lookup(call.tenant, report_id.value, call.deadline)
        if record is None:
            return view_missing(report_id)
        return self.reader.render(record, request.include_content)

    async def watch(
        self, request: pb.WatchReportRequest, call: Call
    ) -> AsyncIterator[pb.WatchReportResponse]:
        # `call` carries the stream's own budget (Chain.stream with long_lived=True).
        report_id = self.codec.verify(call.tenant, request.report_id)
        async for response in watch_report(
            call.tenant,
            report_id,
            self.reader,
            self.hub,
            call.remaining,
            heartbeat_seconds=self.settings.watch_heartbeat_seconds,
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
        pieces = self.results.read(record.result, rid, call.deadline)
        async for chunk in download_chunks(metadata, pieces):
            yield chunk

    async def list_kinds(
        self, request: pb.ListReportKindsRequest, call: Call
    ) -> pb.ListReportKindsResponse:
        return self._kinds
