"""Runner.run_batch (a Kinesis batch of light reports, issue 22) against the moto server:
the batched reads, concurrent claims and terminal writes keep every promise of `run`, for
far fewer AWS calls per report."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from functions.runner import Outcome, Runner, RunResult
from reportgrid import intents
from reportgrid.settings import Settings
from reportgrid.states import State
from tests.integration.workers.conftest import TENANT, Region, make_task


def _light(region: Region, seed: int, **extra: Any) -> Any:
    return make_task(region.settings, "synthetic", {"output_rows": 10, "seed": seed, **extra})


def _count_calls(client: Any) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()

    def count(*, model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client.meta.events.register("before-call", count)
    return counts


def _put(region: Region, item: Any) -> None:
    region.services.store._ddb.put_item(TableName=region.settings.table_name, Item=item)


def test_a_batch_of_light_reports_runs_each_once_in_few_aws_calls(region: Region) -> None:
    # Given 40 light tasks, and the run's DynamoDB and S3 calls counted
    tasks = [_light(region, seed) for seed in range(40)]
    calls = _count_calls(region.services.store._ddb)
    s3_calls = _count_calls(region.services.s3)

    # When one runner runs them as one batch
    results = Runner(region.services).run_batch(tasks)
    made = calls + s3_calls  # a copy: the checks below read too

    # Then every report SUCCEEDED in one attempt, and the batch paid at most 3 calls each
    assert [r.outcome for r in results if isinstance(r, RunResult)] == [Outcome.SUCCEEDED] * 40
    for task in tasks:
        record = region.get(task.report_id)
        assert record is not None
        assert record.state is State.SUCCEEDED
        assert record.attempts == 1
        assert record.result is not None
        assert record.result.row_count == 10
    assert sum(made.values()) <= 3 * len(tasks), made
    assert made["PutItem"] == 2 * len(tasks)  # a claim and a terminal write each
    assert made["GetItem"] == 0  # the tombstone checks are batched


def test_a_batch_keeps_every_promise_of_a_single_run(region: Region) -> None:
    # Given a batch with an ordinary task, one cancelled and one deleted before the start,
    # an invalid one, and the ordinary one's task twice (a duplicate stream record)
    plain, cancelled, deleted = (_light(region, seed) for seed in range(3))
    invalid = make_task(region.settings, "synthetic", {"output_rows": -1})
    _put(region, intents.cancel_item(cancelled.report_id, TENANT, requested_ms=1, created_ms=None))
    _put(region, intents.tombstone_item(deleted.report_id, TENANT, deleted_ms=1))

    results = Runner(region.services).run_batch([plain, cancelled, deleted, invalid, plain])

    outcomes = [r.outcome if isinstance(r, RunResult) else r for r in results]
    assert outcomes == [
        Outcome.SUCCEEDED,
        Outcome.CANCELLED,
        Outcome.NOOP,
        Outcome.FAILED,
        Outcome.NOOP,  # the duplicate found it done
    ]
    record = region.get(plain.report_id)
    assert record is not None
    assert record.attempts == 1
    assert (c := region.get(cancelled.report_id)) is not None
    assert c.state is State.CANCELLED
    assert c.cancel_requested
    assert region.get(deleted.report_id) is None  # nothing written for a deleted report
    assert (f := region.get(invalid.report_id)) is not None
    assert f.error_reason == "INVALID_PARAMS"


def test_a_long_report_in_a_batch_renews_every_lease_and_sees_a_cancel(
    region: Region, settings: Settings
) -> None:
    # Given a 1 s lease and a batch whose first report is cancelled while it runs and
    # whose second runs 2.5 s: the reports after them wait well past their first lease
    lease = 1.0
    services = region.services
    short = Runner(
        type(services)(
            settings=settings.model_copy(update={"worker_lease_seconds": lease}),
            store=services.store,
            s3=services.s3,
            notifier=services.notifier,
        )
    )
    cancelled = _light(region, 1, cpu_ms=5000)
    long = _light(region, 0, cpu_ms=2500)
    later = [_light(region, seed) for seed in range(2, 4)]
    intruder: list[str] = []

    def meanwhile() -> None:
        time.sleep(0.8)
        _put(
            region,
            intents.cancel_item(cancelled.report_id, TENANT, requested_ms=1, created_ms=None),
        )
        time.sleep(1.5)  # past the first lease of the reports still waiting
        claim = services.store.claim(later[0], owner="intruder", region="r", lease_seconds=60)
        intruder.append(claim.outcome.name)

    other = threading.Thread(target=meanwhile)
    other.start()
    results = short.run_batch([cancelled, long, *later])
    other.join()

    # Then the cancelled one stopped at a renewal; another worker found the waiting
    # reports' leases live (renewed), and each of them ran once
    outcomes = [r.outcome if isinstance(r, RunResult) else r for r in results]
    assert outcomes == [Outcome.CANCELLED] + [Outcome.SUCCEEDED] * 3, outcomes
    assert intruder == ["BUSY"]
    for task in [long, *later]:
        record = region.get(task.report_id)
        assert record is not None
        assert record.attempts == 1


def test_a_stale_prefetched_snapshot_never_wins_a_write(region: Region) -> None:
    # Given a snapshot read before another worker claimed the report
    task = _light(region, 9)
    store = region.services.store
    stale = store.read_many([task.report_id])
    other = store.claim(task, owner="other", region="r", lease_seconds=60)
    assert other.record is not None

    # When our claim is served the stale snapshot
    ours = store.with_snapshots(stale).claim(task, owner="us", region="r", lease_seconds=60)

    # Then its conditional write failed, it read again and found the other's live lease
    assert ours.outcome.name == "BUSY"
    record = region.get(task.report_id)
    assert record is not None
    assert record.lease_owner == "other"


def test_a_finished_report_keeps_its_lease_until_its_terminal_write(
    region: Region, settings: Settings
) -> None:
    # Given a 1 s lease and a batch whose first report finishes at once but is written
    # terminal only after the second one's 2.5 s run (the batch's terminal writes go last)
    services = region.services
    short = Runner(
        type(services)(
            settings=settings.model_copy(update={"worker_lease_seconds": 1.0}),
            store=services.store,
            s3=services.s3,
            notifier=services.notifier,
        )
    )
    quick, long = _light(region, 20), _light(region, 21, cpu_ms=2500)
    intruder: list[str] = []

    def meanwhile() -> None:
        time.sleep(1.8)  # past the lease quick's claim took; long is still running
        claim = services.store.claim(quick, owner="intruder", region="r", lease_seconds=60)
        intruder.append(claim.outcome.name)

    other = threading.Thread(target=meanwhile)
    other.start()
    results = short.run_batch([quick, long])
    other.join()

    # Then nobody could take the finished report over, and it was written once
    assert intruder == ["BUSY"], "a finished report's lease ran out before its terminal write"
    assert [r.outcome for r in results if isinstance(r, RunResult)] == [Outcome.SUCCEEDED] * 2
    record = region.get(quick.report_id)
    assert record is not None
    assert (record.state, record.attempts) == (State.SUCCEEDED, 1)
