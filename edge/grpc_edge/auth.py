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
answer expires. An expired key (its `expires_ms`, reportgrid/apikeys.py) is refused at
once, UNAUTHENTICATED, whatever is cached: the expiry is checked on every resolution.

A valid key's tenant (reportgrid/tenants.py: disabled or not, and its quotas) is read once
and cached for `positive_ttl_seconds` too, so disabling a tenant (PERMISSION_DENIED) and
changing its quotas take effect within that time. A tenant with no item (keys put before
tenants existed: the local region's seeding, the benchmarks) is enabled and has only the
service's own limits. When the tenant item cannot be read the last answer is kept; with none,
the call is UNAVAILABLE.

Last use is recorded without a write per request: at most one conditional UpdateItem per
key per apikeys.LAST_USED_INTERVAL_MS per process, in the background, and refused by its
condition when another process wrote it within the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from grpc_edge.store import bounded
from reportgrid import apikeys, tenants
from reportgrid.errors import PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient

POSITIVE_TTL_SECONDS: Final = 30.0
NEGATIVE_TTL_SECONDS: Final = 5.0
POSITIVE_CACHE_ENTRIES: Final = 50_000
NEGATIVE_CACHE_ENTRIES: Final = 10_000
UNKNOWN_LOOKUPS_PER_SECOND: Final = 20.0
UNKNOWN_LOOKUP_BURST: Final = 40.0
_LOOKUP_SECONDS: Final = 2.0
# Background last-used writes in flight at most; beyond it a use is simply not recorded.
_MAX_USE_WRITES: Final = 64

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


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid key stands for."""

    tenant: str
    prefix: str  # the key's first characters: how audit records name it
    expires_ms: int | None = None


def _expired(grant: Grant) -> Unauthenticated:
    assert grant.expires_ms is not None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(grant.expires_ms / 1000))
    return Unauthenticated(
        f"the API key {grant.prefix} expired at {when}; ask your operator for a new one"
    )


def _disabled(tenant: str) -> PermissionDenied:
    return PermissionDenied(f"tenant {tenant!r} is disabled; ask your operator")


class _Lru:
    """key hash -> (valid until (monotonic), grant or None), at most `limit` entries."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[str, tuple[float, Grant | None]] = OrderedDict()

    def get(self, digest: str) -> tuple[float, Grant | None] | None:
        found = self._items.get(digest)
        if found is not None:
            self._items.move_to_end(digest)
        return found

    def put(self, digest: str, until: float, grant: Grant | None) -> None:
        self._items[digest] = (until, grant)
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
        self._inflight: dict[str, asyncio.Future[Grant | None]] = {}
        # tenant -> (valid until (monotonic), its item or None: defaults)
        self._tenants: dict[str, tuple[float, tenants.Tenant | None]] = {}
        self._tenant_reads: dict[str, asyncio.Future[tenants.Tenant | None]] = {}
        self._used: dict[str, float] = {}  # key hash -> when this process last recorded a use
        self._use_writes: set[asyncio.Task[None]] = set()
        self.use_writes = 0  # last-used writes sent
        self._rate = unknown_lookups_per_second
        self._burst = unknown_lookup_burst
        self._tokens = unknown_lookup_burst
        self._tokens_at = time.monotonic()
        self.lookups = 0
        self.refused = 0  # new keys answered LOOKUPS_LIMITED instead of read

    async def tenant_of(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        return (await self.grant_of(metadata)).tenant

    async def grant_of(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Grant:
        """The valid, unexpired key's grant, its tenant enabled; else the precise error."""
        key = bearer_key(metadata)
        digest = apikeys.key_hash(key)
        grant = await self._grant(digest, apikeys.key_prefix(key))
        if grant.expires_ms is not None and time.time() * 1000 >= grant.expires_ms:
            raise _expired(grant)
        now = time.monotonic()
        cached = self._tenants.get(grant.tenant)
        tenant = cached[1] if cached is not None and cached[0] > now else await self._tenant(grant)
        if tenant is not None and tenant.disabled:
            raise _disabled(grant.tenant)
        self._note_use(digest, now)
        return grant

    def quotas(self, tenant: str) -> tenants.Quotas | None:
        """The tenant's quotas as last read (its key was just resolved: it is cached); None
        for a tenant without an item, which has only the service's own limits."""
        cached = self._tenants.get(tenant)
        return cached[1].quotas if cached is not None and cached[1] is not None else None

    async def _grant(self, digest: str, prefix: str) -> Grant:
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[0] > now and known[1] is not None:
            return known[1]  # only grants are kept here
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
            pending = asyncio.ensure_future(self._lookup(digest, charged, prefix))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(digest, None))
        grant = await asyncio.shield(pending)
        if grant is None:
            raise UNKNOWN
        return grant

    async def _tenant(self, grant: Grant) -> tenants.Tenant | None:
        pending = self._tenant_reads.get(grant.tenant)
        if pending is None:
            pending = asyncio.ensure_future(self._read_tenant(grant.tenant))
            self._tenant_reads[grant.tenant] = pending
            pending.add_done_callback(lambda _: self._tenant_reads.pop(grant.tenant, None))
        return await asyncio.shield(pending)

    async def _read_tenant(self, name: str) -> tenants.Tenant | None:
        try:
            response = await bounded(
                self._ddb.get_item(TableName=self._table, Key=tenants.item_key(name)),
                time.monotonic() + _LOOKUP_SECONDS,
                "the tenant store",
            )
        except Exception:
            stale = self._tenants.get(name)
            if stale is not None:  # keep serving on the last answer
                return stale[1]
            raise Unavailable("the tenant store could not be read; retry") from None
        item = response.get("Item")
        found = tenants.from_item(item) if item is not None else None
        self._tenants[name] = (time.monotonic() + self._positive_ttl, found)
        return found

    def _note_use(self, digest: str, now: float) -> None:
        last = self._used.get(digest)
        if last is not None and now - last < apikeys.LAST_USED_INTERVAL_MS / 1000:
            return
        if len(self._use_writes) >= _MAX_USE_WRITES:
            return
        if len(self._used) >= POSITIVE_CACHE_ENTRIES:
            self._used.clear()  # a few extra (conditional, refused) writes at worst
        self._used[digest] = now
        self.use_writes += 1
        task = asyncio.ensure_future(self._write_use(digest))
        self._use_writes.add(task)
        task.add_done_callback(self._use_writes.discard)

    async def _write_use(self, digest: str) -> None:
        arguments = apikeys.last_used_update(digest, time.time_ns() // 1_000_000)
        # Refused by its condition (another process wrote it lately), or lost: no matter.
        with contextlib.suppress(Exception):
            await bounded(
                self._ddb.update_item(TableName=self._table, **arguments),
                time.monotonic() + _LOOKUP_SECONDS,
                "the API key store",
            )

    def _take_token(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _lookup(self, digest: str, charged: bool, prefix: str) -> Grant | None:
        self.lookups += 1
        key = apikeys.item_key(digest)
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
        grant: Grant | None = None
        if item is not None:
            record = apikeys.record_from_item(item)
            if not record.revoked:
                grant = Grant(record.tenant, prefix, record.expires_ms)
        now = time.monotonic()
        if grant is not None:
            if charged:  # a valid key: its read does not count against the budget
                self._tokens = min(self._burst, self._tokens + 1.0)
            self._unknown.pop(digest)
            self._known.put(digest, now + self._positive_ttl, grant)
        else:
            self._known.pop(digest)
            self._unknown.put(digest, now + self._negative_ttl, None)
        return grant


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
