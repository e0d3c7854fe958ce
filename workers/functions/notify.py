"""After a state change the workers put the report in the Redis cache and publish it on
its events channel (WatchReport listens there). The cache is an accelerator only: every
Redis failure is logged and swallowed, and timeouts are short, so a slow or dead Redis
never fails or delays a report by more than a moment.

A terminal state is published once per report and state: its dedupe id
(`notified:<report id>:<state>`) is set with the publish in one script, so a second run of
the report (a takeover, a redelivery) caches its record but announces nothing new. The id
is the same in every region, for consumers that see more than one region's events.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from reportgrid import records, resources
from reportgrid.records import ReportRecord

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_SECONDS: Final = 0.5
# Terminal records do not change again (until they expire); cache them for a while.
TERMINAL_CACHE_SECONDS: Final = 3600
# A live state is superseded soon; keep it briefly so the cache never serves it long.
LIVE_CACHE_SECONDS: Final = 30
DEDUPE_PREFIX: Final = "notified:"
# Cache the record; publish it only when this (report, state) was not announced before.
_PUBLISH_ONCE: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('PUBLISH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def dedupe_id(record: ReportRecord) -> str:
    """One completion notification per report and state, whichever run produced it."""
    return f"{DEDUPE_PREFIX}{record.report_id}:{record.state.name}"


class Notifier:
    """Writes records to Redis. With no URL it does nothing (Redis is optional)."""

    def __init__(self, redis_url: str | None, *, client: redis.Redis | None = None) -> None:
        self._url = redis_url
        self._client = client

    def _redis(self) -> redis.Redis | None:
        if self._client is None and self._url:
            import redis  # noqa: PLC0415 - only processes with a cache need it

            self._client = redis.Redis.from_url(
                self._url,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                retry_on_timeout=False,
            )
        return self._client

    def publish(self, record: ReportRecord) -> bool:
        """Cache and publish `record`; False (logged) if Redis did not take it."""
        try:
            client = self._redis()
            if client is None:
                return False
            data = records.encode_record(record)
            if record.terminal:
                keys = (
                    resources.cache_report_key(record.report_id),
                    resources.cache_events_channel(record.report_id),
                    dedupe_id(record),
                )
                client.eval(_PUBLISH_ONCE, 3, *keys, data, TERMINAL_CACHE_SECONDS)
                return True
            ttl = LIVE_CACHE_SECONDS
            pipe = client.pipeline(transaction=False)
            pipe.set(resources.cache_report_key(record.report_id), data, ex=ttl)
            pipe.publish(resources.cache_events_channel(record.report_id), data)
            pipe.execute()
        except Exception:  # a cache must never fail a report, whatever it raises
            log.warning("could not publish report %s to Redis", record.report_id, exc_info=True)
            return False
        return True

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                log.debug("closing Redis failed", exc_info=True)
