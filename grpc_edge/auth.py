"""API key -> tenant, with a short in-process cache, and the per-tenant rate limit.

Keys are looked up by their SHA-256 (reportgrid.apikeys); answers are cached for a short
time, unknown and revoked keys too (briefly), so a burst of bad keys cannot become a burst
of table reads. Concurrent misses for one key share one read.

Revocation therefore takes effect on each edge process within `positive_ttl_seconds`
(POSITIVE_TTL_SECONDS, 30 s, by default): a revoked key keeps working until its cached
answer expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Final

from grpc_edge.store import bounded
from reportgrid import apikeys, resources
from reportgrid.errors import ResourceExhausted, Unauthenticated, Unavailable

POSITIVE_TTL_SECONDS: Final = 30.0
NEGATIVE_TTL_SECONDS: Final = 5.0
_CACHE_LIMIT: Final = 50_000
_LOOKUP_SECONDS: Final = 2.0

MISSING: Final = Unauthenticated("missing `authorization: Bearer <api key>` metadata")
MALFORMED: Final = Unauthenticated("the authorization metadata is not `Bearer <api key>`")
UNKNOWN: Final = Unauthenticated("the API key is unknown or revoked")


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


class ApiKeyResolver:
    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        *,
        positive_ttl_seconds: float = POSITIVE_TTL_SECONDS,
        negative_ttl_seconds: float = NEGATIVE_TTL_SECONDS,
    ) -> None:
        self._ddb = dynamodb
        self._table = table_name
        self._positive_ttl = positive_ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        # key hash -> (valid until (monotonic), tenant or None for unknown/revoked)
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._inflight: dict[str, asyncio.Future[str | None]] = {}
        self.lookups = 0

    async def tenant_of(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        digest = apikeys.key_hash(bearer_key(metadata))
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            tenant = cached[1]
        else:
            pending = self._inflight.get(digest)
            if pending is None:
                pending = asyncio.ensure_future(self._lookup(digest))
                self._inflight[digest] = pending
                pending.add_done_callback(lambda _: self._inflight.pop(digest, None))
            tenant = await asyncio.shield(pending)
        if tenant is None:
            raise UNKNOWN
        return tenant

    async def _lookup(self, digest: str) -> str | None:
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
        ttl = self._positive_ttl if tenant else self._negative_ttl
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # crude but bounded; misses refill it
        self._cache[digest] = (time.monotonic() + ttl, tenant)
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
