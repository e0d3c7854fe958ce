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
# A keyed submit is remembered as long as its task can be in the task log.
IDEMPOTENCY_TTL_SECONDS: Final = resources.TASK_RETENTION_HOURS * 3600


class TerminalLru:
    """report id -> terminal record, least recently used evicted first."""

    def __init__(self, size: int = LRU_SIZE, ttl: float = LRU_TTL_SECONDS) -> None:
        self._items: OrderedDict[str, tuple[float, ReportRecord]] = OrderedDict()
        self._size = size
        self._ttl = ttl

    def get(self, report_id: str) -> ReportRecord | None:
        found = self._items.get(report_id)
        if found is None:
            return None
        stored_at, record = found
        if time.monotonic() - stored_at > self._ttl:
            del self._items[report_id]
            return None
        self._items.move_to_end(report_id)
        return record

    def put(self, record: ReportRecord) -> None:
        if not record.terminal:
            return
        self._items[record.report_id] = (time.monotonic(), record)
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

    @property
    def available(self) -> bool:
        return self.client is not None and not self.breaker.is_open

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

    async def seen_submit(self, report_id: str, budget: float | None) -> bool:
        """Was this keyed report already accepted (by any edge)? False when unsure."""
        client = self.client
        if client is None:
            return False
        try:
            return bool(
                await self.breaker.call(
                    lambda: client.exists(resources.cache_idempotency_key(report_id)),
                    budget=budget,
                )
            )
        except Exception:  # BreakerOpen, timeouts, connection errors: a miss
            self.errors += 1
            return False

    async def mark_submit(self, report_id: str, budget: float | None) -> bool:
        """Remember an accepted keyed report (SET NX). True if this call set it first."""
        client = self.client
        if client is None:
            return True
        try:
            created = await self.breaker.call(
                lambda: client.set(
                    resources.cache_idempotency_key(report_id),
                    b"1",
                    nx=True,
                    ex=IDEMPOTENCY_TTL_SECONDS,
                ),
                budget=budget,
            )
        except Exception:  # BreakerOpen, timeouts, connection errors: a miss
            self.errors += 1
            return True
        return bool(created)
