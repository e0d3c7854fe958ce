"""Notifier.publish_many against a real redis-server: a Kinesis batch's notifications go
out in one round trip each for its claims and its terminal writes (issue 22), and each
record is still cached and announced as `publish` alone would (a terminal state once)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from functions.notify import Notifier
from functions.runner import Outcome, Runner, RunResult, Services
from reportgrid import records, resources
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.workers.conftest import Region, make_task


class _Counting(Notifier):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.round_trips = 0

    def publish_many(self, records: Sequence[ReportRecord]) -> int:
        self.round_trips += 1
        return super().publish_many(records)


def _record(report_id: str, state: State) -> ReportRecord:
    return ReportRecord(
        report_id=report_id,
        tenant="tenant-a",
        kind="synthetic",
        state=state,
        created_ms=1,
        output_format=pb.OUTPUT_FORMAT_CSV,
    )


def _seen(pubsub: Any) -> list[tuple[str, State]]:
    out = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        record = records.decode_record(message["data"])
        out.append((record.report_id, record.state))
    return out


def test_publish_many_caches_each_and_announces_a_terminal_state_once(region: Region) -> None:
    client = redis.Redis.from_url(region.redis_url)
    pubsub: Any = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(*(resources.cache_events_channel(r) for r in ("r-pm-a", "r-pm-b")))
    for _ in range(2):
        pubsub.get_message(timeout=1)  # the subscribe confirmations
    # Given a live record, a terminal one, and that terminal one again (a second run)
    batch = [
        _record("r-pm-a", State.RUNNING),
        _record("r-pm-b", State.SUCCEEDED),
        _record("r-pm-b", State.SUCCEEDED),
    ]
    # When they are published together
    assert Notifier(region.redis_url).publish_many(batch) == 3
    # Then each is cached, with its state's lifetime, and the terminal state announced once
    assert _seen(pubsub) == [("r-pm-a", State.RUNNING), ("r-pm-b", State.SUCCEEDED)]
    for report_id, longest in (("r-pm-a", 30), ("r-pm-b", 3600)):
        cached = client.get(resources.cache_report_key(report_id))
        assert cached is not None
        assert records.decode_record(cached).report_id == report_id
        assert 0 < client.ttl(resources.cache_report_key(report_id)) <= longest
    # ... and a dead Redis takes none, without raising
    assert Notifier("redis://127.0.0.1:1/0").publish_many(batch) == 0
    pubsub.close()
    client.close()


def test_a_batch_notifies_in_one_round_trip_per_phase(region: Region) -> None:
    notifier = _Counting(region.redis_url)
    services = Services(
        settings=region.settings,
        store=region.services.store,
        s3=region.services.s3,
        notifier=notifier,
    )
    tasks = [
        make_task(region.settings, "synthetic", {"output_rows": 10, "seed": s}) for s in range(5)
    ]
    client = redis.Redis.from_url(region.redis_url)
    pubsub: Any = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(*(resources.cache_events_channel(t.report_id) for t in tasks))
    for _ in tasks:
        pubsub.get_message(timeout=1)
    # When five light reports run as one batch
    results = Runner(services).run_batch(tasks)
    # Then each was announced RUNNING, then SUCCEEDED, in two round trips for all five
    assert [r.outcome for r in results if isinstance(r, RunResult)] == [Outcome.SUCCEEDED] * 5
    seen = _seen(pubsub)
    for task in tasks:
        assert [s for r, s in seen if r == task.report_id] == [State.RUNNING, State.SUCCEEDED]
    assert notifier.round_trips == 2
    pubsub.close()
    client.close()
