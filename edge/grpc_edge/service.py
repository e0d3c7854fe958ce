"""The ReportService handlers. Each takes the parsed request and the `Call` (tenant and
deadline, resolved by the interceptors) and returns a response or raises a Reportgrid error;
the interceptors turn errors into statuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from grpc_edge.cache import RedisTier
from grpc_edge.peer import PeerSender, send_both
from grpc_edge.producer import TaskProducer
from grpc_edge.reads import ReportReader, now_ms, view_missing
from grpc_edge.store import ReportStore, bounded
from grpc_edge.tokens import PageTokens, filters_hash
from grpc_edge.watch import EventHub, watch_report
from reportgrid import intents, records, resources, results, tasks
from reportgrid.engine.registry import Registry
from reportgrid.errors import (
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy, validate_submit_on_loop

logger = Logger(service="reportgrid-edge", child=True)

# Used when the client sets no deadline: no call may wait forever on a dependency
# (settings.call_budget_seconds overrides it; WatchReport has its own budget).
DEFAULT_BUDGET_SECONDS: Final = resources.EDGE_CALL_BUDGET_SECONDS
DOWNLOAD_CHUNK_BYTES: Final = 1024 * 1024
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500
_NO_UPPER_BOUND: Final = "9" * 14  # above every created_key


@dataclass(frozen=True, slots=True)
class Call:
    """Who is calling and until when."""

    tenant: str
    deadline: float  # time.monotonic()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


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
        s3: Any,
        replica_s3: Any = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.codec = settings.id_codec()
        self.store = store
        self.reader = reader
        self.redis = redis
        self.hub = hub
        self.producer = producer
        self.s3 = s3
        # The replica bucket is read and cleaned through the peer region's own client
        # (grpc_edge/clients.py); the home client only when no peer client exists.
        self.replica_s3 = replica_s3 if replica_s3 is not None else s3
        # The peer region's standby queue (DURABILITY_MULTI_REGION); set by build_server.
        self.peer: PeerSender | None = None
        # The first id secret; PageTokens signs under its own context string.
        self.tokens = PageTokens(settings.id_secrets[0].get_secret_value().encode())
        self._kinds = registry.to_proto()
        self.inputs = InputPolicy.of(settings.input_buckets)

    # -- SubmitReport: the hot path --------------------------------------------------------

    async def submit(self, request: pb.SubmitReportRequest, call: Call) -> pb.SubmitReportResponse:
        await validate_submit_on_loop(
            request, self.registry, tenant=call.tenant, inputs=self.inputs
        )
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
        if key is not None and await self.redis.seen_submit(rid, call.remaining()):
            # Only ever marked after an enqueue succeeded, so a deduplicated answer never
            # stands for a task that was lost.
            return pb.SubmitReportResponse(
                report_id=rid, state=self._known_state(rid), deduplicated=True
            )
        task = TaskRecord(
            report_id=rid,
            tenant=call.tenant,
            home_region=self.settings.region,
            request=request,
        )
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
        deduplicated = False
        if key is not None:
            # Best effort: with Redis down the id is still the same, and the workers'
            # conditional writes make the two tasks one report.
            deduplicated = not await self.redis.mark_submit(rid, call.remaining())
        return pb.SubmitReportResponse(
            report_id=rid, state=pb.REPORT_STATE_PENDING, deduplicated=deduplicated
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
        page_size, states, kinds, after, before = _list_filters(request)
        filters = filters_hash([sorted(states), sorted(kinds), after, before])
        shard_count = resources.TENANT_INDEX_SHARDS
        cursors: list[str | None] = [None] * shard_count
        if request.page_token:
            cursors = list(
                self.tokens.read(call.tenant, request.page_token, filters, shard_count).shards
            )
        low = "0" if after is None else f"{after:013d}"
        default_high = _NO_UPPER_BOUND if before is None else f"{before:013d}"

        def wanted(record: ReportRecord) -> bool:
            if kinds and record.kind not in kinds:
                return False
            return not states or record.effective_state(now_ms()) in states

        pages = await asyncio.gather(
            *(
                self._shard_matches(
                    call,
                    shard,
                    low=low,
                    high=cursors[shard] or default_high,
                    limit=page_size,
                    wanted=wanted,
                )
                for shard in range(shard_count)
                if cursors[shard] != ""
            )
        )
        candidates = [
            (sort_key, shard, record) for shard, matches, _ in pages for sort_key, record in matches
        ]
        candidates.sort(key=lambda c: c[0], reverse=True)
        page = candidates[:page_size]
        exhausted = {shard: done for shard, _, done in pages}
        taken: dict[int, list[str]] = {}
        for sort_key, shard, _ in page:
            taken.setdefault(shard, []).append(sort_key)
        offered = {shard: len(matches) for shard, matches, _ in pages}
        for shard, done in exhausted.items():
            if done and len(taken.get(shard, ())) == offered[shard]:
                cursors[shard] = ""
            elif shard in taken:
                cursors[shard] = min(taken[shard])  # exclusive bound of the next page
        views = await self._with_intents([record for _, _, record in page], call)
        response = pb.ListReportsResponse(
            reports=[records.to_proto(record, now_ms=now_ms()) for record in views]
        )
        if any(cursor != "" for cursor in cursors):
            response.next_page_token = self.tokens.issue(call.tenant, cursors, filters)
        return response

    async def _with_intents(self, page: list[ReportRecord], call: Call) -> list[ReportRecord]:
        """The page as the API shows it: deleted reports (a tombstone whose report item a
        late worker write brought back) left out, live ones with their cancel requests."""
        if not page:
            return page
        found = await self.store.intents_of([r.report_id for r in page], deadline=call.deadline)
        views: list[ReportRecord] = []
        for record in page:
            snapshot = found[record.report_id]
            if snapshot.deleted:
                continue
            view = intents.Snapshot(record.report_id, record, snapshot.cancel).view()
            if view is not None:
                views.append(view)
        return views

    async def _shard_matches(
        self, call: Call, shard: int, *, low: str, high: str, limit: int, wanted: Any
    ) -> tuple[int, list[tuple[str, ReportRecord]], bool]:
        """Up to `limit`-or-more matching reports of one shard with sort key < high, newest
        first; and whether the shard has nothing after them."""
        matches: list[tuple[str, ReportRecord]] = []
        start_key = None
        while True:
            items, start_key = await self.store.query_tenant_shard(
                call.tenant,
                shard,
                low=low,
                high=high,
                limit=max(limit, 25),
                start_key=start_key,
                deadline=call.deadline,
            )
            for item in items:
                sort_key = item.get(resources.TENANT_INDEX_SORT_KEY, {}).get("S", "")
                if sort_key >= high:  # BETWEEN is inclusive; the bound is not
                    continue
                record = records.from_item(item)
                if wanted(record):
                    matches.append((sort_key, record))
            if start_key is None or len(matches) >= limit:
                return shard, matches, start_key is None

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
                return pb.DeleteReportResponse(report_id=rid)
            raise
        # The stored result first: if that fails nothing has changed and a retry is safe.
        # Then the tombstone, which hides the report from every reader and stops every
        # worker (a run that stores its result after this removes it again), and the item.
        if record is not None and record.result is not None and record.result.s3_key:
            await self._delete_object(record.result.s3_key, call)
        await self.store.delete_report(rid, call.tenant, deadline=call.deadline)
        self.reader.forget(rid)
        await self.redis.evict(rid, call.remaining())
        return pb.DeleteReportResponse(report_id=rid)

    def _bucket(self) -> str:
        if not self.settings.results_bucket:
            raise Internal("REPORTGRID_RESULTS_BUCKET is not set but a result lives in S3")
        return self.settings.results_bucket

    async def _delete_object(self, key: str, call: Call) -> None:
        """Delete every version of the object, in this region's bucket and the replica: the
        buckets are versioned (a plain delete would only hide the data behind a delete
        marker), and S3 replication does not carry version deletes."""
        await self._delete_versions(self._bucket(), key, call)
        replica = self.settings.replica_results_bucket
        if replica:
            # Best effort: with the peer region lost, Delete must still work here (its copy
            # then stays; docs/MULTI_REGION.md, "what remains").
            try:
                await self._delete_versions(replica, key, call, self.replica_s3)
            except Unavailable:
                logger.warning("could not delete the replica of a deleted report's result")

    async def _delete_versions(
        self, bucket: str, key: str, call: Call, s3: Any | None = None
    ) -> None:
        s3 = self.s3 if s3 is None else s3
        try:
            listing = await bounded(
                s3.list_object_versions(Bucket=bucket, Prefix=key),
                call.deadline,
                "result storage",
            )
            versions = results.versions_of(listing, key)
            if versions:
                await bounded(
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True}),
                    call.deadline,
                    "result storage",
                )
        except (ClientError, BotoCoreError) as err:
            logger.warning(
                "result delete failed",
                extra={"code": _error_code(err), "bucket": bucket},
            )
            raise Unavailable("the stored result could not be deleted; retry") from None

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
        result = record.result
        metadata = pb.ResultMetadata()
        metadata.CopyFrom(records.to_proto(record, now_ms=now_ms()).result)
        offset = 0
        pending = bytearray()

        def chunk(piece: bytes) -> pb.DownloadReportChunk:
            message = pb.DownloadReportChunk(data=piece, offset=offset)
            if offset == 0:
                message.metadata.CopyFrom(metadata)
            return message

        # Re-cut whatever sizes storage yields into full chunks: fewer, larger messages.
        async for data in self._result_bytes(result, rid, call):
            pending += data
            while len(pending) >= DOWNLOAD_CHUNK_BYTES:
                piece = bytes(pending[:DOWNLOAD_CHUNK_BYTES])
                del pending[:DOWNLOAD_CHUNK_BYTES]
                yield chunk(piece)
                offset += len(piece)
        if pending or offset == 0:  # the tail; an empty result still gets its metadata
            yield chunk(bytes(pending))

    async def _result_bytes(
        self, result: records.ResultInfo, rid: str, call: Call
    ) -> AsyncIterator[bytes]:
        if result.inline_compressed is not None:
            yield zlib.decompress(result.inline_compressed)
            return
        if not result.s3_key:
            raise Internal("a SUCCEEDED report has neither inline nor S3 result")
        # Workers store S3 results zlib-compressed (reportgrid.results); stream one GET
        # through an incremental decompressor and check the recorded SHA-256 on the way,
        # so a damaged object ends the stream with an error instead of wrong bytes.
        inflate = zlib.decompressobj()
        digest = hashlib.sha256()
        try:
            response = await self._get_result_object(result.s3_key, call)
            body = response["Body"]
            try:
                while packed := await body.read(DOWNLOAD_CHUNK_BYTES):
                    if piece := inflate.decompress(packed):
                        digest.update(piece)
                        yield piece
            finally:
                body.close()
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "error")
            if code in ("NoSuchKey", "404"):
                raise NotFound("report", rid) from None
            raise Unavailable(f"the stored result could not be read ({code}); retry") from None
        except zlib.error:
            raise Internal(f"stored result of {rid} is not a zlib stream") from None
        if tail := inflate.flush():
            digest.update(tail)
            yield tail
        if digest.hexdigest() != result.sha256:
            raise Internal(f"stored result of {rid} does not match its recorded sha256")

    async def _get_result_object(self, key: str, call: Call) -> Any:
        """GetObject from this region's bucket; when that fails (the bucket unreachable, or
        the object written by the peer region and not replicated yet), from the replica
        bucket, through the peer region's client. The last failure is raised."""
        sources = [(self._bucket(), self.s3)]
        if self.settings.replica_results_bucket:
            sources.append((self.settings.replica_results_bucket, self.replica_s3))
        for index, (bucket, s3) in enumerate(sources):
            last = index == len(sources) - 1
            # The home bucket gets half the time left, so a hung region leaves the rest.
            deadline = call.deadline if last else time.monotonic() + call.remaining() / 2
            try:
                return await bounded(
                    s3.get_object(Bucket=bucket, Key=key), deadline, "result storage"
                )
            except (ClientError, Unavailable):
                if last:
                    raise
            except BotoCoreError:  # no answer at all (connection refused, endpoint down)
                if last:
                    raise Unavailable("result storage could not be reached; retry") from None
        raise AssertionError("unreachable")

    async def list_kinds(
        self, request: pb.ListReportKindsRequest, call: Call
    ) -> pb.ListReportKindsResponse:
        return self._kinds


def _list_filters(
    request: pb.ListReportsRequest,
) -> tuple[int, set[State], set[str], int | None, int | None]:
    violations: list[FieldViolation] = []
    page_size = request.page_size or DEFAULT_PAGE_SIZE
    if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
        violations.append(FieldViolation("page_size", f"must be 0 to {MAX_PAGE_SIZE}"))
    states: set[State] = set()
    for index, value in enumerate(request.states):
        state = records.STATE_FROM_PROTO.get(value)
        if state is None:
            violations.append(FieldViolation(f"states[{index}]", f"{value} is not a report state"))
        else:
            states.add(state)
    after = _millis(request, "created_after", violations)
    before = _millis(request, "created_before", violations)
    if after is not None and after < 0:
        violations.append(FieldViolation("created_after", "must not be before 1970"))
    if before is not None and before <= 0:
        violations.append(FieldViolation("created_before", "must be after 1970"))
    if after is not None and before is not None and after >= before:
        violations.append(
            FieldViolation("created_before", "must be later than created_after (empty range)")
        )
    if violations:
        raise InvalidArgument(violations)
    return page_size, states, set(request.kinds), after, before


def _millis(
    request: pb.ListReportsRequest, name: str, violations: list[FieldViolation]
) -> int | None:
    """A timestamp filter in ms; an out-of-range Timestamp is a field violation."""
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    try:
        return int(getattr(request, name).ToMilliseconds())
    except ValueError:
        violations.append(FieldViolation(name, "is not a valid timestamp"))
        return None


def _error_code(err: ClientError | BotoCoreError) -> str:
    """AWS's error code for the logs; a connection failure has none, only its class."""
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return type(err).__name__
