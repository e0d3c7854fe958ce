"""The two cache tiers in front of DynamoDB: an in-process LRU of terminal reports and
Redis (ElastiCache), the latter behind a circuit breaker so that a failed or frozen Redis
costs nothing once detected.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

import redis.asyncio as aioredis

from grpc_edge.breaker import CircuitBreaker
from reportgrid import records, resources
from reportgrid.records import ReportRecord

# Terminal reports do not change, except by Delete (which evicts locally) in another edge
# process: the TTL bounds how long another process can still serve a deleted report.
LRU_TTL_SECONDS: Final = 30.0
LRU_SIZE: Final = 20_000
# How long Redis keeps a terminal report the edge read from DynamoDB.
REDIS_TERMINAL_TTL_SECONDS: Final = 3600


class _Entry:
    __slots__ = ("record", "replies", "stored_at")

    def __init__(self, stored_at: float, record: ReportRecord) -> None:
        self.stored_at = stored_at
        self.record = record
        # (include_content, full view) -> (valid until, epoch ms; the serialized GetReport
        # reply): a reply is only ever served for the very request shape it was built for.
        self.replies: dict[tuple[bool, bool], tuple[int, bytes]] = {}


class TerminalLru:
    """report id -> terminal record, least recently used evicted first; with each record
    its serialized GetReport replies, so a hot terminal report is answered without
    verifying its id or building its reply again."""

    def __init__(self, size: int = LRU_SIZE, ttl: float = LRU_TTL_SECONDS) -> None:
        self._items: OrderedDict[str, _Entry] = OrderedDict()
        self._size = size
        self._ttl = ttl

    def _live(self, report_id: str) -> _Entry | None:
        entry = self._items.get(report_id)
        if entry is None:
            return None
        if time.monotonic() - entry.stored_at > self._ttl:
            del self._items[report_id]
            return None
        self._items.move_to_end(report_id)
        return entry

    def get(self, report_id: str) -> ReportRecord | None:
        entry = self._live(report_id)
        return None if entry is None else entry.record

    def reply(
        self, tenant: str, report_id: str, include_content: bool, full: bool, now_ms: int
    ) -> bytes | None:
        """The cached reply to GetReport(report_id) for this tenant, if there is one.

        A record of the tenant stored under exactly this id proves the id is the tenant's
        (only verified ids are ever read into the cache), so the HMAC check is skipped;
        anything else (another tenant, an unknown id) takes the full path and its errors."""
        entry = self._live(report_id)
        if entry is None or entry.record.tenant != tenant:
            return None
        found = entry.replies.get((include_content, full))
        if found is None or now_ms >= found[0]:
            return None
        return found[1]

    def keep_reply(
        self, record: ReportRecord, include_content: bool, full: bool, reply: bytes, now_ms: int
    ) -> None:
        """Remember a terminal report's serialized reply while it stays right: until its
        retention ends (it then reads EXPIRED) or the record leaves the cache."""
        entry = self._items.get(record.report_id)
        if entry is None or entry.record is not record:
            return
        expires_ms = record.expires_at * 1000 if record.expires_at is not None else None
        valid_until = expires_ms if expires_ms is not None and now_ms < expires_ms else 2**62
        entry.replies[include_content, full] = (valid_until, reply)

    def put(self, record: ReportRecord) -> None:
        if not record.terminal:
            return
        self._items[record.report_id] = _Entry(time.monotonic(), record)
        self._items.move_to_end(record.report_id)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def evict(self, report_id: str) -> None:
        self._items.pop(report_id, None)

    def __len__(self) -> int:
        return len(self._items)


class RedisTier:
    """Best-effort Redis: every method returns a neutral answer when Redis is down."""

    def __init__(self, client: aioredis.Redis | None, breaker: CircuitBreaker) -> None:
        self.client = client
        self.breaker = breaker
        self.errors = 0

    async def get_record(self, report_id: str, budget: float | None) -> ReportRecord | None:
        client = self.client
        if client is None:
            return None
        try:
            raw = await self.breaker.call(
                lambda: client.get(resources.cache_report_key(report_id)), budget=budget
            )
        except Exception:  # BreakerOpen, timeouts, connection errors: a miss
            self.errors += 1
            return None
        if raw is None:
            return None
        try:
            return records.decode_record(raw)
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable entry is a miss; DynamoDB is the truth

    async def put_terminal(self, record: ReportRecord, budget: float | None) -> None:
        client = self.client
        if client is None or not record.terminal:
            return
        try:
            await self.breaker.call(
                lambda: client.set(
                    resources.cache_report_key(record.report_id),
                    records.encode_record(record),
                    ex=REDIS_TERMINAL_TTL_SECONDS,
                ),
                budget=budget,
            )
        except Exception:  # BreakerOpen, timeouts, connection errors: a miss
            self.errors += 1

    async def evict(self, report_id: str, budget: float | None) -> None:
        client = self.client
        if client is None:
            return
        try:
            await self.breaker.call(
                lambda: client.delete(resources.cache_report_key(report_id)), budget=budget
            )
        except Exception:  # BreakerOpen, timeouts, connection errors: a miss
            self.errors += 1

    async def publish(self, record: ReportRecord, budget: float | None) -> None:
        client = self.client
        if client is None:
            return
        try:
            await self.breaker.call(
                lambda: client.publish(
                    resources.cache_events_channel(record.report_id),
                    records.encode_record(record),
                ),
                budget=budget,
            )
        except Exception:  # BreakerOpen, timeouts, connection errors: a miss
            self.errors += 1
