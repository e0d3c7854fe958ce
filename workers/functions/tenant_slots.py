"""Per-tenant fairness: at most `max_running` reports of one tenant RUNNING at once in a
region, so that one tenant's burst never holds another tenant's report behind it.

Each tenant has a slot set in Redis (Valkey): a sorted set (resources.cache_slots_key) of
"<report id>/<run owner>" members scored by their lease expiry (epoch ms, Redis's own clock).
A run takes a slot before its claim and gives it back after its terminal write (or as soon
as it knows it will not run: the report was done, busy, cancelled). Each slot script
first drops the members whose lease ran out, so a dead worker's slot frees itself after
the lease (resources.WORKER_LEASE_SECONDS), as its report's lease does; the heartbeat that
renews a run's lease renews its slot too. A task that gets no slot is put off, never
failed: the caller sends it to the heavy queue with a delay (functions/deferral.py), and
it takes the same check when it comes back.

The cap is the tenant item's `max_running` (reportgrid/tenants.py), read once per
QUOTA_TTL_SECONDS per process (as the edge caches it); a tenant without an item gets
settings.default_max_running, which the CDK derives from the fleet (limits.py).

Slots are an accelerator of fairness, not of correctness: a report runs once because of
its conditional claim, whatever the slots say. So when Redis does not answer, the check
fails open (every task runs, uncapped), counted in TenantSlotsFailOpen, and Redis is left
alone for DOWN_SECONDS so a dead cache costs one short timeout, not one per batch. The
cap holds per region (each region has its own cache).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import resources, tenants

if TYPE_CHECKING:
    import redis
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from reportgrid.settings import Settings

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_SECONDS: Final = 0.5
# After a failed call, Redis is not asked again for this long (the checks fail open).
DOWN_SECONDS: Final = 5.0
# A tenant's quota is read again after this long (the edge caches it as long).
QUOTA_TTL_SECONDS: Final = 30.0

# KEYS[1] the tenant's slot set. ARGV[1] the cap, ARGV[2] the lease (ms), ARGV[3..] the
# members wanted, in order. Drops expired members, then gives each wanted member a slot
# while fewer than the cap are held (a member that holds one already keeps it, renewed).
# Returns the members granted. TIME is Redis's clock: no skew between workers.
_ACQUIRE_LUA: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local cap = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local granted = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], member) then
    redis.call('ZADD', KEYS[1], now + lease, member)
    granted[#granted + 1] = member
  elseif held < cap then
    redis.call('ZADD', KEYS[1], now + lease, member)
    held = held + 1
    granted[#granted + 1] = member
  end
end
if held > 0 then
  redis.call('PEXPIRE', KEYS[1], lease + 1000)
end
return granted
"""
# KEYS[1] the slot set; ARGV[1] the lease (ms), ARGV[2..] members. Renews each member
# still held (a member pruned meanwhile is not brought back: its run lost its lease too);
# returns how many were renewed.
_RENEW_LUA: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[i])
end
if redis.call('ZCARD', KEYS[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], lease + 1000)
end
return renewed
"""
# KEYS[1] the slot set; ARGV members. Removes them (idempotent: a member already gone
# counts nothing) and drops expired ones; returns how many it removed.
_RELEASE_LUA: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZREM', KEYS[1], unpack(ARGV))
"""


def slot_member(report_id: str, owner: str) -> str:
    """One run's slot: the report and the attempt (its lease owner), so a duplicate
    delivery checking the same report never frees the slot of the run that holds it."""
    return f"{report_id}/{owner}"


@dataclass(frozen=True, slots=True)
class Wanted:
    """A run that asks for a slot."""

    tenant: str
    report_id: str
    owner: str

    @property
    def member(self) -> str:
        return slot_member(self.report_id, self.owner)


@dataclass(frozen=True, slots=True)
class Grant:
    """What `acquire` decided: the runs that may start; `fail_open` when the cache did not
    answer and every run may start."""

    granted: frozenset[Wanted]
    fail_open: bool = False

    def has(self, run: Wanted) -> bool:
        return self.fail_open or run in self.granted


class TenantQuotas:
    """A tenant's max_running: its tenant item's, read once per QUOTA_TTL_SECONDS; the
    default for a tenant without one. A failed read keeps the last answer (else the
    default): a quota is never a reason not to run."""

    def __init__(
        self,
        ddb: DynamoDBClient,
        table_name: str,
        *,
        default_max_running: int,
        ttl_seconds: float = QUOTA_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ddb = ddb
        self._table = table_name
        self.default = default_max_running
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def max_running(self, tenant: str) -> tuple[int, bool]:
        """(the cap, whether it is the tenant's own quota rather than the default)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(tenant)
        if cached is None or cached[0] <= now:
            own = self._read(tenant, cached[1] if cached is not None else None)
            with self._lock:
                self._cache[tenant] = (now + self._ttl, own)
        else:
            own = cached[1]
        return (own, True) if own is not None else (self.default, False)

    def _read(self, tenant: str, last: int | None) -> int | None:
        try:
            item = self._ddb.get_item(
                TableName=self._table, Key=tenants.item_key(tenant), ConsistentRead=False
            ).get("Item")
        except (ClientError, BotoCoreError):
            log.warning("could not read tenant %s's quota; using the last one", tenant)
            return last
        return tenants.quotas_from_item(item).max_running if item is not None else None


class TenantSlots:
    """acquire / renew / release the slots of runs, grouped by tenant: one script call per
    tenant each (one round trip for a Kinesis batch's reports of one tenant)."""

    def __init__(
        self,
        redis_url: str | None,
        quotas: TenantQuotas,
        *,
        lease_seconds: float,
        client: redis.Redis | None = None,
    ) -> None:
        self._url = redis_url
        self._client = client
        self.quotas = quotas
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.fail_opens = 0  # checks that let runs start uncapped (tests, logs)
        self._unreported = 0  # of them, not yet counted in a metric

    def _redis(self) -> redis.Redis | None:
        with self._lock:
            if self._client is None and self._url:
                import redis  # noqa: PLC0415 - only processes with a cache need it

                self._client = redis.Redis.from_url(
                    self._url,
                    socket_timeout=SOCKET_TIMEOUT_SECONDS,
                    socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                    retry_on_timeout=False,
                )
            return self._client

    def _call(self, script: str, key: str, args: Sequence[Any]) -> Any:
        """The script's reply, or None (logged) when Redis is down or did not answer."""
        if time.monotonic() < self._down_until:
            return None
        client = self._redis()
        if client is None:
            return None
        try:
            return client.eval(script, 1, key, *args)
        except Exception:  # connection errors, timeouts, a cache in trouble: fail open
            log.warning("the tenant slot cache did not answer; not capping", exc_info=True)
            self._down_until = time.monotonic() + DOWN_SECONDS
            return None

    def acquire(self, runs: Iterable[Wanted]) -> Grant:
        """Slots for as many of `runs` (in order, per tenant) as each tenant's cap allows."""
        granted: set[Wanted] = set()
        for tenant, wanted in _by_tenant(runs).items():
            cap, _ = self.quotas.max_running(tenant)
            reply = self._call(
                _ACQUIRE_LUA,
                resources.cache_slots_key(tenant),
                [cap, self._lease_ms, *(w.member for w in wanted)],
            )
            if reply is None:
                with self._lock:
                    self.fail_opens += 1
                    self._unreported += 1
                return Grant(frozenset(), fail_open=True)
            members = {m.decode() if isinstance(m, bytes) else str(m) for m in reply}
            granted.update(w for w in wanted if w.member in members)
        return Grant(frozenset(granted))

    def renew(self, runs: Iterable[Wanted]) -> None:
        """Extend the slots of runs still going (each heartbeat, with their leases)."""
        for tenant, wanted in _by_tenant(runs).items():
            self._call(
                _RENEW_LUA,
                resources.cache_slots_key(tenant),
                [self._lease_ms, *(w.member for w in wanted)],
            )

    def release(self, runs: Iterable[Wanted]) -> None:
        """Give slots back (idempotent; a slot not given back frees itself after a lease)."""
        for tenant, wanted in _by_tenant(runs).items():
            self._call(_RELEASE_LUA, resources.cache_slots_key(tenant), [w.member for w in wanted])

    def take_fail_opens(self) -> int:
        """The uncapped checks since the last call (for TenantSlotsFailOpen)."""
        with self._lock:
            count, self._unreported = self._unreported, 0
        return count

    def tenant_class(self, tenant: str) -> str:
        """The metrics' class of a tenant: "quota" (its own max_running) or "default"."""
        return "quota" if self.quotas.max_running(tenant)[1] else "default"

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                log.debug("closing Redis failed", exc_info=True)


def slots_for(settings: Settings, ddb: DynamoDBClient) -> TenantSlots:
    """The per-tenant running caps of a process that runs reports, on the region's cache
    (every stream worker and queue worker of the region shares each tenant's set)."""
    quotas = TenantQuotas(
        ddb, settings.table_name, default_max_running=settings.default_max_running
    )
    return TenantSlots(settings.redis_url, quotas, lease_seconds=settings.worker_lease_seconds)


def _by_tenant(runs: Iterable[Wanted]) -> Mapping[str, list[Wanted]]:
    grouped: dict[str, list[Wanted]] = {}
    for run in runs:
        grouped.setdefault(run.tenant, []).append(run)
    return grouped
