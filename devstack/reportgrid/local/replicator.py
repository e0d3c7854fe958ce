"""An emulation of DynamoDB global-table replication for the local multi-region stack.

moto keeps one independent table per region and does not replicate global tables, so the
local stack runs this replicator beside the regions. It is NOT part of the deployed system:
in AWS the managed global table does this job.

What it emulates, and how:
- every change in a region's table (read from that table's DynamoDB stream) is applied to
  every other region's table, after a configurable lag;
- conflicts resolve last-writer-wins by the stream record's write time (ties broken by
  region name), as the managed feature does: a change is applied only while it is still the
  newest known change of its item, so every region converges on the same winner;
- the replicator's own writes come back on the target's stream; it recognises them by the
  image it wrote and does not send them back (no ping-pong);
- `pause()`/`resume()` stop and restart delivery (a replication outage); `lag` delays it;
- every applied change records the lag it actually got (from its write in the source
  region to its write landing in the target): on a slow machine that is more than `lag`
  (the poll interval, moto's answers), and the drill judges its guarantee by it;
- `synchronous_tables`: tables that are NOT replicated through streams but share one item
  store across regions (the moto server's `--shared-table`), the local stand-in for a
  multi-Region strongly consistent (MRSC) global table; they have no lag to measure.
Known gap: a write that lands in a region between the replicator's read of the streams and
its apply can be overwritten by an older change; the window is one poll interval.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from reportgrid import resources
from reportgrid.local.bootstrap import client

log = logging.getLogger("reportgrid.replicator")

Image = dict[str, Any] | None  # None: the item was removed


@dataclass(order=True)
class _Change:
    written_at: float
    region: str
    key_json: str = field(compare=False)
    image: Image = field(compare=False)
    image_hash: str = field(compare=False)
    due_at: float = field(compare=False, default=0.0)


@dataclass
class ReplicatorStats:
    applied: int = 0  # writes made to a target region
    superseded: int = 0  # changes dropped because a newer change of the item was known
    echoes: int = 0  # our own writes seen again on a target's stream
    # Per applied write: seconds from the source write to the target write landing.
    lags: list[float] = field(default_factory=list)

    def lag_summary(self) -> LagSummary:
        return LagSummary.of(self.lags)


@dataclass(frozen=True, slots=True)
class LagSummary:
    """The replication lag items actually got (seconds)."""

    items: int = 0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    @classmethod
    def of(cls, lags: list[float]) -> LagSummary:
        if not lags:
            return cls()
        ordered = sorted(lags)

        def at(q: float) -> float:
            return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

        return cls(len(ordered), at(0.5), at(0.99), ordered[-1])


def _hash(image: Image) -> str:
    return hashlib.sha256(json.dumps(image, sort_keys=True, default=str).encode()).hexdigest()


class _StreamReader:
    """Reads one region's table stream from where it left off, over all shards."""

    def __init__(self, region: str, endpoint_url: str, table: str) -> None:
        self.region = region
        ddb = client("dynamodb", region, endpoint_url)
        self._streams = client("dynamodbstreams", region, endpoint_url)
        self._arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._iterators: dict[str, str | None] = {}
        # Positioned now, so every change made after the replicator exists is seen; a
        # shard that appears later is read from its start.
        self._discover("LATEST")

    def _discover(self, position: str) -> None:
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard["ShardId"], ShardIteratorType=position
                )["ShardIterator"]

    def read(self) -> list[dict[str, Any]]:
        self._discover("TRIM_HORIZON")
        records: list[dict[str, Any]] = []
        for shard_id in list(self._iterators):
            iterator = self._iterators[shard_id]
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                records += page["Records"]
                iterator = page.get("NextShardIterator")
                if not page["Records"]:
                    break
            self._iterators[shard_id] = iterator
        return records


class GlobalTableReplicator:
    """Replicates `table` among `regions` on one AWS endpoint (the moto server)."""

    def __init__(
        self,
        endpoint_url: str,
        regions: list[str],
        *,
        table: str = resources.TABLE_NAME,
        lag_seconds: float = 0.0,
        poll_seconds: float = 0.1,
    ) -> None:
        if len(set(regions)) < 2:
            raise ValueError("replication needs at least two distinct regions")
        self.lag_seconds = lag_seconds
        self.poll_seconds = poll_seconds
        self.stats = ReplicatorStats()
        self._table = table
        self._readers = [_StreamReader(r, endpoint_url, table) for r in regions]
        self._writers = {r: client("dynamodb", r, endpoint_url) for r in regions}
        self._pending: list[_Change] = []
        # Per item: the newest change known (written_at, region), and per (region, item)
        # the hash of the image we last wrote there, to recognise our own echoes.
        self._newest: dict[str, tuple[float, str]] = {}
        self._written: dict[tuple[str, str], str] = {}
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------
    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def start(self) -> GlobalTableReplicator:
        self._thread = threading.Thread(target=self.run, name="replicator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the loop must outlive a bad poll; the next one retries
                log.exception("replication step failed")
            self._stop.wait(self.poll_seconds)

    # -- work ------------------------------------------------------------------------
    def step(self, now: float | None = None) -> int:
        """Read every stream, then apply the changes that are due. Returns writes made."""
        self._collect()
        if self.paused:
            return 0
        now = time.time() if now is None else now
        due = [c for c in self._pending if c.due_at <= now]
        self._pending = [c for c in self._pending if c.due_at > now]
        return sum(self._apply(change) for change in sorted(due))

    def drain(self, timeout: float = 10.0) -> None:
        """Step until nothing is pending (for tests and the drill)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step(now=float("inf"))
            if not self._pending:
                return
        raise TimeoutError(f"replication backlog of {len(self._pending)} did not drain")

    def _collect(self) -> None:
        for reader in self._readers:
            for record in reader.read():
                data = record["dynamodb"]
                image = data.get("NewImage") if record["eventName"] != "REMOVE" else None
                key_json = json.dumps(data["Keys"], sort_keys=True)
                digest = _hash(image)
                if self._written.get((reader.region, key_json)) == digest:
                    self.stats.echoes += 1
                    del self._written[(reader.region, key_json)]
                    continue
                written_at = data["ApproximateCreationDateTime"].timestamp()
                change = _Change(
                    written_at,
                    reader.region,
                    key_json,
                    image,
                    digest,
                    due_at=written_at + self.lag_seconds,
                )
                if (written_at, reader.region) > self._newest.get(key_json, (0.0, "")):
                    self._newest[key_json] = (written_at, reader.region)
                self._pending.append(change)

    def _apply(self, change: _Change) -> int:
        if self._newest.get(change.key_json) != (change.written_at, change.region):
            self.stats.superseded += 1
            return 0
        keys = json.loads(change.key_json)
        writes = 0
        for region, ddb in self._writers.items():
            if region == change.region:
                continue
            if change.image is None:
                ddb.delete_item(TableName=self._table, Key=keys)
            else:
                ddb.put_item(TableName=self._table, Item=change.image)
            self._written[(region, change.key_json)] = change.image_hash
            self.stats.lags.append(max(0.0, time.time() - change.written_at))
            writes += 1
        self.stats.applied += writes
        return writes


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Emulate DynamoDB global-table replication between local regions "
        "(SIGUSR1 pauses, SIGUSR2 resumes)."
    )
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--regions", required=True, help="comma-separated, at least two")
    parser.add_argument("--lag", type=float, default=0.0, help="seconds of replication lag")
    ns = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s replicator %(message)s")
    replicator = GlobalTableReplicator(
        ns.endpoint_url, [r.strip() for r in ns.regions.split(",")], lag_seconds=ns.lag
    )
    signal.signal(signal.SIGUSR1, lambda *_: replicator.pause())
    signal.signal(signal.SIGUSR2, lambda *_: replicator.resume())
    signal.signal(signal.SIGTERM, lambda *_: replicator.stop())
    log.info("replicating %s among %s (lag %.1fs)", resources.TABLE_NAME, ns.regions, ns.lag)
    replicator.run()


if __name__ == "__main__":
    main()
