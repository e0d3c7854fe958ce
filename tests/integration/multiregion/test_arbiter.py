"""Claims on the lease arbiter (functions.arbiter): two regions whose reports tables do not
replicate in time still run a report once and write it terminal once.

The arbiter's table is one table both regions' stores use: what an MRSC global table is to
its callers (every conditional write checked against the latest value, in any region). The
reports tables replicate through the stepped replicator, held back here: the lag that breaks
the last-writer-wins path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from functions.arbiter import LeaseArbiter
from functions.runner import Outcome
from functions.store import Claim, LeaseLost, ReportStore
from reportgrid.local.bootstrap import client
from reportgrid.local.dev import create_lease_table
from reportgrid.local.servers import MotoServer
from reportgrid.states import State
from tests.integration.multiregion.conftest import (
    HOME,
    LEASE_SECONDS,
    PEER,
    Pair,
    Region,
    make_task,
)

ARBITER_TABLE = "reportgrid-leases-test"


@pytest.fixture
def arbitrated(pair: Pair) -> Pair:
    """Both regions' stores claim through one arbiter table."""
    endpoint = pair.home.aws.endpoint_url
    ddb = client("dynamodb", HOME, endpoint)
    create_lease_table(ddb, ARBITER_TABLE)
    for region in (pair.home, pair.peer):
        region.services.store = ReportStore(
            region.ddb, region.settings.table_name, arbiter=LeaseArbiter(ddb, ARBITER_TABLE)
        )
    return pair


def _finishers(region: Region, report_id: str) -> str | None:
    record = region.services.store.get(report_id)
    return record.lease_owner if record is not None and record.terminal else None


@pytest.mark.parametrize("with_arbiter", [True, False], ids=["arbiter", "lww"])
def test_a_finished_report_is_not_run_again_by_a_region_that_has_not_seen_it(
    pair: Pair, request: pytest.FixtureRequest, with_arbiter: bool
) -> None:
    if with_arbiter:
        request.getfixturevalue("arbitrated")
    home, peer = pair.home, pair.peer
    # Given replication lags behind everything the test does, and the home region
    # completes a report
    pair.replicator.pause()
    task = make_task(home.settings, seed=21, age_seconds=5)
    done = home.runner("lambda").run(task)
    assert done.outcome is Outcome.SUCCEEDED
    # When the peer, which sees no record of it, runs the task too
    again = peer.runner("standby").run(task)
    if with_arbiter:
        # Then the arbiter knows it is done: the peer writes nothing
        assert again.outcome is Outcome.NOOP
        assert peer.services.store.get(task.report_id) is None
    else:
        # (Without it, the peer's replica decides alone: it runs the report again. This is
        # the double run the standby's margin must prevent on the LWW path.)
        assert again.outcome is Outcome.SUCCEEDED
    pair.replicator.resume()
    pair.replicator.drain()
    assert _finishers(home, task.report_id) == _finishers(peer, task.report_id)


def test_only_the_lease_holder_runs_and_a_late_writer_writes_nothing(arbitrated: Pair) -> None:
    home, peer = arbitrated.home, arbitrated.peer
    arbitrated.replicator.pause()
    task = make_task(home.settings, seed=22, age_seconds=5)
    # Given the home region holds the report's lease
    mine = home.services.store.claim(
        task, owner="lambda:home:1", region=home.aws.region, lease_seconds=LEASE_SECONDS
    )
    assert mine.outcome is Claim.CLAIMED
    # When the peer claims it while its replica shows nothing: busy, until the lease ends
    theirs = peer.services.store.claim(
        task, owner="standby:peer:1", region=peer.aws.region, lease_seconds=LEASE_SECONDS
    )
    assert theirs.outcome is Claim.BUSY
    assert theirs.lease_until_ms > 0
    # ... and once the home worker stopped renewing (its region is lost), the peer takes it
    time.sleep(LEASE_SECONDS + 0.2)
    theirs = peer.services.store.claim(
        task, owner="standby:peer:1", region=peer.aws.region, lease_seconds=LEASE_SECONDS
    )
    assert theirs.outcome is Claim.CLAIMED
    # Then the home worker, back late, can neither renew nor finish
    with pytest.raises(LeaseLost):
        home.services.store.renew(task.report_id, owner="lambda:home:1", lease_seconds=2)
    with pytest.raises(LeaseLost):
        home.services.store.finish(
            task.report_id, owner="lambda:home:1", state=State.SUCCEEDED, ttl_seconds=60
        )
    # ... while the peer finishes, and once replicated both regions show its one write
    peer.services.store.finish(
        task.report_id, owner="standby:peer:1", state=State.SUCCEEDED, ttl_seconds=60
    )
    arbitrated.replicator.resume()
    arbitrated.replicator.drain()
    assert _finishers(home, task.report_id) == "standby:peer:1"
    assert _finishers(peer, task.report_id) == "standby:peer:1"


def test_the_local_mrsc_table_serves_every_region_one_item_store(tmp_path: Path) -> None:
    # Given the moto server the local regions run on, with the lease table shared
    with MotoServer(None, tmp_path / "moto.log", shared_tables=[ARBITER_TABLE]) as moto:
        arbiters = {}
        for region in (HOME, PEER):
            ddb = client("dynamodb", region, moto.endpoint_url)
            create_lease_table(ddb, ARBITER_TABLE)
            arbiters[region] = LeaseArbiter(ddb, ARBITER_TABLE)
        # When each region claims one report through its own replica
        home = arbiters[HOME].acquire("r1", owner="home", lease_seconds=30)
        peer = arbiters[PEER].acquire("r1", owner="peer", lease_seconds=30)
        # Then exactly one wins, and the other sees the winner at once (no replication)
        assert home.held
        assert not peer.held
        assert peer.holder == "home"
        assert arbiters[HOME].complete("r1", owner="home", outcome={"pk": {"S": "x"}})
        assert arbiters[PEER].acquire("r1", owner="peer", lease_seconds=30).done


def test_a_report_whose_finisher_died_after_the_arbiter_said_done_is_written_forward(
    arbitrated: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = arbitrated.home
    store = home.services.store
    task = make_task(home.settings, seed=23)
    # Given a run that marks the report done in the arbiter, then dies before its write
    # to the reports table (a Lambda timeout, a crash between the two calls)
    real_put = store._put

    def dies_on_the_terminal_write(old: object, new: object) -> object:
        if getattr(new, "terminal", False):
            raise RuntimeError("the worker died here")
        return real_put(old, new)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_put", dies_on_the_terminal_write)
    with pytest.raises(RuntimeError):
        home.runner("lambda").run(task)
    monkeypatch.undo()
    record = store.get(task.report_id)
    assert record is not None
    assert record.state is State.RUNNING

    # When the task is delivered again (a new attempt: another owner) once the dead run's
    # lease has run out (before that the redelivery is BUSY and retried later)
    time.sleep(LEASE_SECONDS + 0.2)
    again = home.runner("lambda").run(task)

    # Then nothing runs it again, and the outcome the arbiter holds is written forward
    assert again.outcome is Outcome.NOOP
    record = store.get(task.report_id)
    assert record is not None
    assert record.state is State.SUCCEEDED, "the report stayed RUNNING: nothing rolled it forward"
    assert record.result is not None
    assert record.result.row_count == 50
