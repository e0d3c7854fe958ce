"""Two runs of one report (a takeover that ran it again, a redelivery) announce each
terminal state once: the second publish finds the state's dedupe id and only caches."""

from __future__ import annotations

import redis

from functions.notify import Notifier, dedupe_id
from reportgrid import records, resources
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb


def _record(report_id: str, state: State, owner: str) -> ReportRecord:
    return ReportRecord(
        report_id=report_id,
        tenant="tenant-a",
        kind="synthetic",
        state=state,
        created_ms=1,
        output_format=pb.OUTPUT_FORMAT_CSV,
        lease_owner=owner,
    )


def test_each_state_is_announced_once_whichever_run_ends_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    notifier = Notifier(redis_url)
    report_id = "r-notify-once"
    pubsub = client.pubsub()
    pubsub.subscribe(resources.cache_events_channel(report_id))
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    # Given two runs of one report, each announcing RUNNING and then SUCCEEDED
    for owner in ("lambda:us-east-1:1", "standby:eu-west-1:2"):
        assert notifier.publish(_record(report_id, State.RUNNING, owner))
        assert notifier.publish(_record(report_id, State.SUCCEEDED, owner))
    seen = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        record = records.decode_record(message["data"])
        seen.append((record.state, record.lease_owner))
    # Then a live state may repeat, but the terminal one is announced once (the first run's)
    assert seen.count((State.SUCCEEDED, "lambda:us-east-1:1")) == 1
    assert [s for s, _ in seen].count(State.SUCCEEDED) == 1
    # ... under its dedupe id, while the cache holds the latest record
    assert client.exists(dedupe_id(_record(report_id, State.SUCCEEDED, "")))
    cached = client.get(resources.cache_report_key(report_id))
    assert cached is not None
    assert records.decode_record(cached).lease_owner == "standby:eu-west-1:2"
    pubsub.close()
    notifier.close()
    client.close()
