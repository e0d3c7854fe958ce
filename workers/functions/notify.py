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

import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from reportgrid import records as records_codec
from reportgrid import resources
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
        return self.publish_many([record]) == 1

    def publish_many(self, records: Sequence[ReportRecord]) -> int:
        """Cache and publish each record, all in one round trip (one pipeline, not a
        transaction: each record's commands stand alone, and a terminal record's dedupe
        script stays atomic); how many Redis took (failures logged)."""
        if not records:
            return 0
        try:
            client = self._redis()
            if client is None:
                return 0
            pipe = client.pipeline(transaction=False)
            sizes: list[int] = []  # commands queued per record
            for record in records:
                data = records_codec.encode_record(record)
                if record.terminal:
                    keys = (
                        resources.cache_report_key(record.report_id),
                        resources.cache_events_channel(record.report_id),
                        dedupe_id(record),
                    )
                    pipe.eval(_PUBLISH_ONCE, 3, *keys, data, TERMINAL_CACHE_SECONDS)
                    sizes.append(1)
                    continue
                pipe.set(resources.cache_report_key(record.report_id), data, ex=LIVE_CACHE_SECONDS)
                pipe.publish(resources.cache_events_channel(record.report_id), data)
                sizes.append(2)
            replies = iter(pipe.execute(raise_on_error=False))
        except Exception:  # a cache must never fail a report, whatever it raises
            log.warning("could not publish %d reports to Redis", len(records), exc_info=True)
            return 0
        taken = 0
        for record, size in zip(records, sizes, strict=True):
            errors = [r for r in itertools.islice(replies, size) if isinstance(r, Exception)]
            if errors:
                log.warning("could not publish report %s to Redis: %s", record.report_id, errors[0])
            else:
                taken += 1
        return taken

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                log.debug("closing Redis failed", exc_info=True)
