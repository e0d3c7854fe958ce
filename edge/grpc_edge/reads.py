"""Reading one report through the tiers: in-process LRU (terminal reports only: they are
immutable) -> Redis -> DynamoDB (the report item with its intents, one BatchGetItem: a
tombstone makes it NOT_FOUND, a cancel request shows on a live report; see
reportgrid/intents.py). Concurrent misses for one id share one fetch.

What a verified id with no record means is decided here (`view_missing`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from grpc_edge.cache import RedisTier, TerminalLru
from grpc_edge.store import ReportStore
from reportgrid import records, resources
from reportgrid.errors import NotFound
from reportgrid.ids import ReportId
from reportgrid.records import ReportRecord
from reportgrid.v1 import reports_pb2 as pb

_RETENTION_MS: Final = resources.TASK_RETENTION_HOURS * 3600 * 1000


class _Tombstone:
    """The report was deleted."""


_DELETED: Final = _Tombstone()
_Fetched = ReportRecord | _Tombstone | None


@dataclass
class TierStats:
    """Monotonic counters for metrics and tests."""

    lru_hits: int = 0
    redis_hits: int = 0
    dynamodb_reads: int = 0
    coalesced: int = 0


def not_found(report_id: str) -> NotFound:
    return NotFound("report", report_id)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def view_missing(report_id: ReportId) -> pb.Report:
    """A verified id with no record. The id proves we accepted its task at the time it
    carries (every id carries one, keyed or not: reportgrid/ids.py), so while that task can
    still be in the task log it is PENDING (queued, no worker has written it yet). Older,
    the task can no longer run, and a record that existed was deleted (its tombstone gone
    too) or swept by TTL: NOT_FOUND, as for any deleted report. Not EXPIRED: a deleted
    report must read exactly like one that never existed, and nothing left tells the two
    apart (a report whose result expired reads EXPIRED from its record until TTL removes
    it)."""
    created = report_id.created_ms
    if now_ms() - created > _RETENTION_MS:
        raise not_found(report_id.value)
    return records.pending_report(report_id.value, created_ms=created)


class ReportReader:
    def __init__(self, store: ReportStore, lru: TerminalLru, redis: RedisTier) -> None:
        self.store = store
        self.lru = lru
        self.redis = redis
        self.stats = TierStats()
        self._inflight: dict[tuple[str, bool], asyncio.Future[_Fetched]] = {}

    async def lookup(
        self, tenant: str, report_id: str, deadline: float | None, *, fresh: bool = False
    ) -> ReportRecord | None:
        """The record as the API shows it (with a live report's cancel request), None when
        there is none yet; NotFound for a deleted report or one of another tenant. `fresh`
        skips the caches and reads consistently (before a write)."""
        if not fresh:
            cached = self.lru.get(report_id)
            if cached is not None:
                self.stats.lru_hits += 1
                return self._owned(tenant, cached)
        key = (report_id, fresh)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(report_id, deadline, fresh))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        else:
            self.stats.coalesced += 1
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        found = await asyncio.shield(pending)
        if isinstance(found, _Tombstone):
            raise not_found(report_id)
        return None if found is None else self._owned(tenant, found)

    @staticmethod
    def _owned(tenant: str, record: ReportRecord) -> ReportRecord:
        # The id is already verified for this tenant; this only guards a corrupt record.
        if record.tenant != tenant:
            raise not_found(record.report_id)
        return record

    async def _fetch(self, report_id: str, deadline: float | None, fresh: bool) -> _Fetched:
        if not fresh:
            budget = None if deadline is None else deadline - time.monotonic()
            cached = await self.redis.get_record(report_id, budget)
            if cached is not None:
                self.stats.redis_hits += 1
                self.lru.put(cached)
                return cached
        self.stats.dynamodb_reads += 1
        snapshot = await self.store.read(report_id, consistent=fresh, deadline=deadline)
        if snapshot.deleted:
            return _DELETED
        record = snapshot.view()
        if record is None:
            return None
        if record.terminal:
            self.lru.put(record)
            # Fill Redis for the other edges, without holding up this answer.
            task = asyncio.ensure_future(self.redis.put_terminal(record, None))
            task.add_done_callback(_ignore_result)
        return record

    def cached_reply(
        self, tenant: str, report_id: str, include_content: bool, full: bool
    ) -> bytes | None:
        """The serialized reply to GetReport of a hot terminal report in this view, or
        None."""
        reply = self.lru.reply(tenant, report_id, include_content, full, now_ms())
        if reply is not None:
            self.stats.lru_hits += 1
        return reply

    def render(
        self, record: ReportRecord, include_content: bool, *, full: bool = False
    ) -> pb.Report | bytes:
        """The GetReport reply for a record (FULL view when `full`): serialized and kept
        with the record when it is terminal (it does not change), a message otherwise."""
        now = now_ms()
        report = records.to_proto(record, now_ms=now, include_content=include_content, full=full)
        if not record.terminal:
            return report
        reply = report.SerializeToString()
        self.lru.keep_reply(record, include_content, full, reply, now)
        return reply

    def forget(self, report_id: str) -> None:
        self.lru.evict(report_id)


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
