"""ListReports: a tenant's reports, newest first, merged from the shards of the tenant index.
Newest first is the only order (no `order_by`): it is the index's sort key, so any other
order would mean reading every report of the tenant.

Each shard is queried for up to a page of matches below its cursor, side by side; the
newest `page_size` of all of them make the page. The page token (grpc_edge/tokens.py)
carries each shard's cursor: the oldest sort key taken from it (an exclusive bound for the
next page), "" once everything it had was taken, None while it was not reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from grpc_edge.call import Call
from grpc_edge.list_filters import ListFilters
from grpc_edge.reads import now_ms
from grpc_edge.store import ReportStore
from grpc_edge.tokens import PageTokens
from reportgrid import intents, records, resources
from reportgrid.records import ReportRecord
from reportgrid.v1 import reports_pb2 as pb

# The least a shard query asks for: a small page must not cost many tiny queries when the
# filters skip most items.
_MIN_QUERY_LIMIT: Final = 25
# A shard's cursor: None = not started, "" = exhausted, else an exclusive upper bound.
Cursor = str | None


@dataclass(frozen=True, slots=True)
class ShardMatches:
    """What one shard offered: (sort key, record) newest first, and whether the shard has
    nothing after them."""

    shard: int
    matches: list[tuple[str, ReportRecord]]
    exhausted: bool


def merge(
    offers: Sequence[ShardMatches], cursors: Sequence[Cursor], page_size: int
) -> tuple[list[ReportRecord], list[Cursor]]:
    """The newest `page_size` matches of all shards, and the cursors of the next page."""
    candidates = [(key, offer.shard, record) for offer in offers for key, record in offer.matches]
    candidates.sort(key=lambda c: c[0], reverse=True)
    page = candidates[:page_size]
    taken: dict[int, list[str]] = {}
    for key, shard, _ in page:
        taken.setdefault(shard, []).append(key)
    after = list(cursors)
    for offer in offers:
        keys = taken.get(offer.shard, [])
        if offer.exhausted and len(keys) == len(offer.matches):
            after[offer.shard] = ""
        elif keys:
            after[offer.shard] = min(keys)  # exclusive bound of the next page
        # else: nothing of it made this page; it starts where it did again
    return [record for _, _, record in page], after


class ReportLister:
    def __init__(self, store: ReportStore, tokens: PageTokens) -> None:
        self.store = store
        self.tokens = tokens

    async def page(self, request: pb.ListReportsRequest, call: Call) -> pb.ListReportsResponse:
        filters = ListFilters.of(request)
        digest = filters.digest()
        shard_count = resources.TENANT_INDEX_SHARDS
        cursors: list[Cursor] = [None] * shard_count
        if request.page_token:
            cursors = list(
                self.tokens.read(call.tenant, request.page_token, digest, shard_count).shards
            )
        offers = await asyncio.gather(
            *(
                self._shard_matches(
                    call,
                    shard,
                    low=filters.low,
                    high=cursors[shard] or filters.high,
                    limit=filters.page_size,
                    labels=filters.labels,
                    wanted=lambda record: filters.wanted(record, now_ms()),
                )
                for shard in range(shard_count)
                if cursors[shard] != ""
            )
        )
        page, cursors = merge(offers, cursors, filters.page_size)
        views = await self._with_intents(page, call)
        response = pb.ListReportsResponse(
            reports=[
                records.to_proto(record, now_ms=now_ms(), full=filters.full) for record in views
            ]
        )
        if any(cursor != "" for cursor in cursors):
            response.next_page_token = self.tokens.issue(call.tenant, cursors, digest)
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
        self,
        call: Call,
        shard: int,
        *,
        low: str,
        high: str,
        limit: int,
        labels: Sequence[tuple[str, str]],
        wanted: Callable[[ReportRecord], bool],
    ) -> ShardMatches:
        """Up to `limit`-or-more matching reports of one shard with sort key < high, newest
        first."""
        matches: list[tuple[str, ReportRecord]] = []
        start_key = None
        while True:
            items, start_key = await self.store.query_tenant_shard(
                call.tenant,
                shard,
                low=low,
                high=high,
                limit=max(limit, _MIN_QUERY_LIMIT),
                start_key=start_key,
                deadline=call.deadline,
                labels=labels,
            )
            for item in items:
                sort_key = item.get(resources.TENANT_INDEX_SORT_KEY, {}).get("S", "")
                if sort_key >= high:  # BETWEEN is inclusive; the bound is not
                    continue
                record = records.from_item(item)
                if wanted(record):
                    matches.append((sort_key, record))
            if start_key is None or len(matches) >= limit:
                return ShardMatches(shard, matches, start_key is None)
