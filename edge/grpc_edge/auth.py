"""API key -> tenant, with a bounded in-process cache, and the per-tenant rate limit.

Keys are looked up by their SHA-256 (reportgrid.apikeys). Known keys are cached for
`positive_ttl_seconds` in an LRU of at most POSITIVE_CACHE_ENTRIES keys (the least recently
used key goes first, never the whole cache). Unknown and revoked keys are cached apart, for
NEGATIVE_TTL_SECONDS (5 s), in their own LRU of NEGATIVE_CACHE_ENTRIES, so a flood of random
keys evicts only other random keys. Concurrent misses for one key share one read.

Reads of keys this process does not know are rate limited per process: a token bucket of
UNKNOWN_LOOKUPS_PER_SECOND with a burst of UNKNOWN_LOOKUP_BURST. A lookup takes a token and
gives it back when the key turns out valid, so only unknown keys spend the budget; a key
this process has seen valid (cached, even expired) is always re-read. Over the budget a
new key is answered UNAVAILABLE with a RetryInfo instead of being read: a flood of random
keys costs at most burst + rate x seconds table reads per process, and a valid tenant's key
first seen during a flood gets in on a retry.

Revocation takes effect on each edge process within `positive_ttl_seconds`
(POSITIVE_TTL_SECONDS, 30 s, by default): a revoked key keeps working until its cached
answer expires.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from grpc_edge.store import bounded
from reportgrid import apikeys, resources
from reportgrid.errors import ResourceExhausted, Unauthenticated, Unavailable

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient

POSITIVE_TTL_SECONDS: Final = 30.0
NEGATIVE_TTL_SECONDS: Final = 5.0
POSITIVE_CACHE_ENTRIES: Final = 50_000
NEGATIVE_CACHE_ENTRIES: Final = 10_000
UNKNOWN_LOOKUPS_PER_SECOND: Final = 20.0
UNKNOWN_LOOKUP_BURST: Final = 40.0
_LOOKUP_SECONDS: Final = 2.0

MISSING: Final = Unauthenticated("missing `authorization: Bearer <api key>` metadata")
MALFORMED: Final = Unauthenticated("the authorization metadata is not `Bearer <api key>`")
UNKNOWN: Final = Unauthenticated("the API key is unknown or revoked")
LOOKUPS_LIMITED: Final = Unavailable(
    "too many unknown API keys reached this server; your key could not be checked now, retry",
    retry_after=1.0,
)


def bearer_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The key from `authorization: Bearer <key>`, or Unauthenticated."""
    for name, value in metadata or ():
        if name == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, key = text.partition(" ")
            if scheme.lower() != "bearer" or not apikeys.well_formed(key.strip()):
                raise MALFORMED
            return key.strip()
    raise MISSING


class _Lru:
    """key hash -> (valid until (monotonic), tenant or None), at most `limit` entries."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    def get(self, digest: str) -> tuple[float, str | None] | None:
        found = self._items.get(digest)
        if found is not None:
            self._items.move_to_end(digest)
        return found

    def put(self, digest: str, until: float, tenant: str | None) -> None:
        self._items[digest] = (until, tenant)
        self._items.move_to_end(digest)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def pop(self, digest: str) -> None:
        self._items.pop(digest, None)

    def __len__(self) -> int:
        return len(self._items)


class ApiKeyResolver:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table_name: str,
        *,
        positive_ttl_seconds: float = POSITIVE_TTL_SECONDS,
        negative_ttl_seconds: float = NEGATIVE_TTL_SECONDS,
        positive_entries: int = POSITIVE_CACHE_ENTRIES,
        negative_entries: int = NEGATIVE_CACHE_ENTRIES,
        unknown_lookups_per_second: float = UNKNOWN_LOOKUPS_PER_SECOND,
        unknown_lookup_burst: float = UNKNOWN_LOOKUP_BURST,
    ) -> None:
        self._ddb = dynamodb
        self._table = table_name
        self._positive_ttl = positive_ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._known = _Lru(positive_entries)
        self._unknown = _Lru(negative_entries)
        self._inflight: dict[str, asyncio.Future[str | None]] = {}
        self._rate = unknown_lookups_per_second
        self._burst = unknown_lookup_burst
        self._tokens = unknown_lookup_burst
        self._tokens_at = time.monotonic()
        self.lookups = 0
        self.refused = 0  # new keys answered LOOKUPS_LIMITED instead of read

    async def tenant_of(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        digest = apikeys.key_hash(bearer_key(metadata))
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[0] > now:
            return known[1] or ""  # only tenants are kept here
        unknown = self._unknown.get(digest)
        if unknown is not None and unknown[0] > now:
            raise UNKNOWN
        pending = self._inflight.get(digest)
        if pending is None:
            # A key seen valid here is re-read freely: only new keys spend the budget.
            charged = known is None
            if charged and not self._take_token(now):
                self.refused += 1
                raise LOOKUPS_LIMITED
            pending = asyncio.ensure_future(self._lookup(digest, charged))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(digest, None))
        tenant = await asyncio.shield(pending)
        if tenant is None:
            raise UNKNOWN
        return tenant

    def _take_token(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _lookup(self, digest: str, charged: bool) -> str | None:
        self.lookups += 1
        key = {k: {"S": v} for k, v in resources.api_key_key(digest).items()}
        try:
            response = await bounded(
                self._ddb.get_item(TableName=self._table, Key=key),
                time.monotonic() + _LOOKUP_SECONDS,
                "the API key store",
            )
        except Unavailable:
            raise
        except Exception:
            raise Unavailable("the API key store could not be read; retry") from None
        item = response.get("Item")
        tenant: str | None = None
        if item is not None:
            record = apikeys.record_from_item(item)
            tenant = None if record.revoked else record.tenant
        now = time.monotonic()
        if tenant:
            if charged:  # a valid key: its read does not count against the budget
                self._tokens = min(self._burst, self._tokens + 1.0)
            self._unknown.pop(digest)
            self._known.put(digest, now + self._positive_ttl, tenant)
        else:
            self._known.pop(digest)
            self._unknown.put(digest, now + self._negative_ttl, None)
        return tenant


class TenantRateLimiter:
    """A token bucket per tenant, per edge process: `rate` requests a second with a burst
    of one second's worth. The ALB spreads a tenant over the fleet, so the fleet-wide limit
    is about rate x processes."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._burst = max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self.shed = 0

    def admit(self, tenant: str) -> None:
        now = time.monotonic()
        tokens, at = self._buckets.get(tenant, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[tenant] = (tokens, now)
            self.shed += 1
            raise ResourceExhausted(
                f"tenant {tenant!r} is over its request rate limit",
                retry_after=(1.0 - tokens) / self._rate,
                subject=f"tenant:{tenant}",
            )
        self._buckets[tenant] = (tokens - 1.0, now)
