"""A tenant's SubmitReport rate across the whole fleet: one token bucket per tenant in Redis
(Valkey), leased out to the edge processes in small batches.

The bucket (rate r = the tenant's quota `submit_per_second`, burst r: one second's worth)
lives in Redis and is changed only by one Lua script (EVALSHA; redis-py loads it again on
NOSCRIPT), which refills it by Redis's own clock (TIME: no skew between edges) and hands
out up to `want` tokens in the same round trip. Each process spends its lease locally:
one Redis call per LEASE_BATCH_SECONDS x r submits per process (5 per second per busy
tenant and process), never one per request. Concurrent submits that find the lease empty
share one call.

What that bounds: every admitted submit spent a token Redis handed out, so over any
window of T seconds the fleet admits at most r x T + burst + (tokens leased before the
window and spent in it: at most processes x batch, and only for LEASE_SECONDS). A lease
not spent within LEASE_SECONDS is dropped (never given back: the fleet may admit a little
less than r, never more). docs/RELIABILITY.md has the figure measured with 2 edges x 2
processes (tests/integration/admin/test_fleet_rate_limit.py).

When the bucket is empty the script says how long until the next token; the process
refuses that tenant's submits locally until then (RESOURCE_EXHAUSTED with that retry
delay), so a flooding tenant costs Redis at most about one call per token per process
(r x processes a second), however many calls it makes.

When Redis is down (the breaker is open, or a call fails or times out) each process falls
back to its own bucket at the tenant's rate: the fleet then admits up to r x processes.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Final

from grpc_edge.breaker import CircuitBreaker
from reportgrid import resources
from reportgrid.errors import ResourceExhausted

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

# Leases cover this long at the tenant's rate (at least one token, at most MAX_LEASE).
LEASE_BATCH_SECONDS: Final = 0.2
MAX_LEASE: Final = 1000
# Tokens leased longer ago than this are dropped unspent.
LEASE_SECONDS: Final = 1.0

# KEYS[1] the tenant's bucket; ARGV rate/s, burst, tokens wanted. Returns {granted, ms to
# wait for the next token when none were granted}. Float state is kept as strings: Lua
# numbers returned to Redis are truncated to integers, stored strings are not.
_LEASE_LUA: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait_ms = 0
if granted < 1 then
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
return {granted, wait_ms}
"""


def over_limit(tenant: str, rate: float, retry_after: float) -> ResourceExhausted:
    return ResourceExhausted(
        f"tenant {tenant!r} is over its submit rate quota of {rate:g} a second (fleet-wide)",
        retry_after=max(0.001, retry_after),
        subject=f"tenant:{tenant}:submit-rate",
    )


class _Lease:
    __slots__ = ("at", "refused_until", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.at = 0.0
        self.refused_until = 0.0


class FleetRateLimiter:
    """admit(tenant, rate) returns, or raises ResourceExhausted with a retry delay."""

    def __init__(self, redis: aioredis.Redis | None, breaker: CircuitBreaker) -> None:
        self._script: AsyncScript | None = (
            redis.register_script(_LEASE_LUA) if redis is not None else None
        )
        self._breaker = breaker
        self._leases: dict[str, _Lease] = {}
        self._pending: dict[str, asyncio.Future[tuple[int, float] | None]] = {}
        self._local: dict[str, tuple[float, float]] = {}  # the fallback: tenant -> (tokens, at)
        self.shed = 0  # submits refused
        self.lease_calls = 0  # Redis round trips
        self.fallbacks = 0  # submits decided by the per-process fallback

    async def admit(self, tenant: str, rate: float, budget: float | None = None) -> None:
        while True:
            now = time.monotonic()
            lease = self._leases.get(tenant)
            if lease is None:
                lease = self._leases[tenant] = _Lease()
            if lease.tokens >= 1 and now - lease.at < LEASE_SECONDS:
                lease.tokens -= 1
                return
            if now < lease.refused_until:
                self.shed += 1
                raise over_limit(tenant, rate, lease.refused_until - now)
            pending = self._pending.get(tenant)
            if pending is None:
                pending = asyncio.ensure_future(self._lease(tenant, rate, budget))
                self._pending[tenant] = pending
                pending.add_done_callback(lambda _: self._pending.pop(tenant, None))
            answer = await asyncio.shield(pending)
            if answer is None:  # Redis is down: this process decides alone
                self._admit_locally(tenant, rate)
                return
            # The lease (or the refusal) is recorded by _lease; look again.

    async def _lease(
        self, tenant: str, rate: float, budget: float | None
    ) -> tuple[int, float] | None:
        script = self._script
        if script is None:
            return None
        burst = max(1.0, rate)
        want = max(1, min(MAX_LEASE, math.ceil(rate * LEASE_BATCH_SECONDS)))
        self.lease_calls += 1
        try:
            reply = await self._breaker.call(
                lambda: script(keys=[resources.cache_rate_key(tenant)], args=[rate, burst, want]),
                budget=budget,
            )
            granted, wait_ms = int(reply[0]), float(reply[1])
        except Exception:  # BreakerOpen, timeouts, connection errors: the fallback
            return None
        lease = self._leases.setdefault(tenant, _Lease())
        now = time.monotonic()
        if granted > 0:
            lease.tokens, lease.at = granted, now  # an older remainder was due to expire
        else:
            lease.tokens = 0
            lease.refused_until = now + wait_ms / 1000
        return granted, wait_ms

    def _admit_locally(self, tenant: str, rate: float) -> None:
        self.fallbacks += 1
        now = time.monotonic()
        burst = max(1.0, rate)
        tokens, at = self._local.get(tenant, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens < 1.0:
            self._local[tenant] = (tokens, now)
            self.shed += 1
            raise over_limit(tenant, rate, (1.0 - tokens) / rate)
        self._local[tenant] = (tokens - 1.0, now)
