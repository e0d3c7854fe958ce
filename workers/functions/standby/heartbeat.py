"""Region liveness through the global table: each region's standby worker writes its
region's heartbeat item every REGION_HEARTBEAT_SECONDS; the peer's standby reads the
replicated item to tell a region that is slow (beating) from one that is lost (silent).

One writer per item (its own region), so last-writer-wins cannot lose anything."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from functions.store import now_ms
from reportgrid import resources

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

log = logging.getLogger(__name__)

BEAT_ATTRIBUTE = "beat_ms"
# A heartbeat item outlives any reader's interest by far; TTL removes it after that.
_TTL_SECONDS = 24 * 3600


def _key(region: str) -> dict[str, dict[str, str]]:
    return {k: {"S": v} for k, v in resources.region_heartbeat_key(region).items()}


class RegionHeartbeat:
    def __init__(
        self,
        ddb: DynamoDBClient,
        table: str,
        region: str,
        *,
        interval: float = resources.REGION_HEARTBEAT_SECONDS,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._ddb = ddb
        self._table = table
        self._region = region
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        now = self._clock()
        self._ddb.put_item(
            TableName=self._table,
            Item={
                **_key(self._region),
                BEAT_ATTRIBUTE: {"N": str(now)},
                resources.TTL_ATTRIBUTE: {"N": str(now // 1000 + _TTL_SECONDS)},
            },
        )

    def start(self) -> RegionHeartbeat:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except (ClientError, BotoCoreError):
                log.warning("could not write the region heartbeat", exc_info=True)
            if self._stop.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def last_beat_ms(ddb: DynamoDBClient, table: str, region: str) -> int | None:
    """When `region` last beat, as this region's replica shows it; None if never."""
    item = ddb.get_item(TableName=table, Key=_key(region), ConsistentRead=True).get("Item")
    if not item or BEAT_ATTRIBUTE not in item:
        return None
    return int(item[BEAT_ATTRIBUTE]["N"])
