"""User intents against two real (moto) regions and the stepped replicator, with replication
paused at the worst moment: a cancel or a delete taken by region B's edge while region A's
worker finishes the report. The intents live in items the workers never write
(reportgrid/intents.py), so last-writer-wins can neither lose A's result nor bring a deleted
report back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aioboto3

from functions.runner import Outcome, Runner, RunResult, Services, run_in_process
from grpc_edge.store import ReportStore as EdgeStore
from reportgrid import resources
from reportgrid.intents import Snapshot
from reportgrid.local.replicator import GlobalTableReplicator
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from tests.integration.multiregion.conftest import TENANT, Pair, Region, make_task


@contextlib.asynccontextmanager
async def edge_store(region: Region) -> AsyncIterator[EdgeStore]:
    """The edge's own store code, on an aioboto3 client of the region (as the edge builds)."""
    async with aioboto3.Session().client(
        "dynamodb", region_name=region.aws.region, endpoint_url=region.aws.endpoint_url
    ) as ddb:
        yield EdgeStore(ddb, region.settings.table_name)


def _during_generation(step: Callable[[], None]) -> Callable[[Any, Any], Any]:
    """An executor that does `step` after the claim, before the generator runs."""

    def execute(generator: Any, request: Any) -> Any:
        step()
        return run_in_process(generator, request)

    return execute


def _runner(region: Region, execute: Callable[[Any, Any], Any], **settings: Any) -> Runner:
    services = region.services
    if settings:
        services = Services(
            settings=services.settings.model_copy(update=settings),
            store=services.store,
            s3=services.s3,
            notifier=services.notifier,
        )
    return Runner(services, execute=execute, owner_prefix=f"lambda:{region.aws.region}")


async def _views(pair: Pair, report_id: str) -> tuple[Snapshot, Snapshot]:
    async with edge_store(pair.home) as home, edge_store(pair.peer) as peer:
        return (
            await home.read(report_id, consistent=True),
            await peer.read(report_id, consistent=True),
        )


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _resume(replicator: GlobalTableReplicator) -> None:
    replicator.resume()
    replicator.drain()


async def test_a_cancel_in_b_while_a_finishes_never_loses_a_s_result(pair: Pair) -> None:
    home, peer = pair.home, pair.peer
    task = make_task(home.settings, seed=21)
    cancelled_in_b: list[float] = []

    async def cancel_in_b() -> None:
        async with edge_store(peer) as store:
            seen = (await store.read(task.report_id, consistent=True)).view()
            # B's edge sees the report RUNNING (A's claim replicated): the cancel is taken
            assert seen is not None
            assert seen.state is State.RUNNING
            await store.put_cancel(task.report_id, TENANT, created_ms=None, deadline=None)
            cancelled_in_b.append(time.time())

    def replicate_claim_then_cut() -> None:
        pair.replicator.drain()
        pair.replicator.pause()

    # Given A's worker claimed the report, the claim replicated, then replication was cut
    result = _runner(home, _during_generation(replicate_claim_then_cut)).run(task)
    # ... and A finished it
    assert result.outcome is Outcome.SUCCEEDED
    assert result.record is not None
    assert result.record.result is not None
    # When B's edge takes a cancel after A's terminal write (the newer write of the two)
    await cancel_in_b()
    assert cancelled_in_b
    _resume(pair.replicator)
    # Then both regions agree: SUCCEEDED with A's result (the cancel came after the end)
    in_a, in_b = await _views(pair, task.report_id)
    assert in_a == in_b
    assert in_a.cancel_requested  # the request is kept, in its own item ...
    view = in_a.view()
    assert view is not None
    assert view.state is State.SUCCEEDED  # ... and lost to the finished run
    assert view.result == result.record.result
    assert not view.cancel_requested
    assert home.services.store.get(task.report_id) == peer.services.store.get(task.report_id)


class PausedRun:
    """A's worker run in a thread, held after its claim replicated to B, so that the test
    can act in B (through the edge's store code) while A's run is under way."""

    def __init__(self, pair: Pair, *, cut: bool, **settings: Any) -> None:
        self.claimed = threading.Event()
        self.go = threading.Event()

        def step() -> None:
            pair.replicator.drain()  # A's claim reaches B
            if cut:
                pair.replicator.pause()
            self.claimed.set()
            self.go.wait(10)

        self.runner = _runner(pair.home, _during_generation(step), **settings)

    async def start(self, task: TaskRecord) -> asyncio.Future[RunResult]:
        run = asyncio.get_running_loop().run_in_executor(None, self.runner.run, task)
        await asyncio.get_running_loop().run_in_executor(None, self.claimed.wait, 10)
        return run


async def test_a_cancel_in_b_that_reaches_a_in_time_ends_the_report_cancelled(
    pair: Pair,
) -> None:
    task = make_task(pair.home.settings, seed=22)
    task.request.params.update({"cpu_ms": 4000})
    paused = PausedRun(pair, cut=False)
    run = await paused.start(task)
    # When B's edge takes a cancel while A runs the report, and it replicates to A
    started = time.monotonic()
    async with edge_store(pair.peer) as store:
        seen = (await store.read(task.report_id, consistent=True)).view()
        assert seen is not None
        assert seen.state is State.RUNNING
        await store.put_cancel(task.report_id, TENANT, created_ms=None, deadline=None)
    pair.replicator.drain()
    paused.go.set()
    result = await run
    # Then A's worker saw the request at a lease renewal and stopped early
    assert result.outcome is Outcome.CANCELLED
    assert time.monotonic() - started < 4.0
    pair.replicator.drain()
    in_a, in_b = await _views(pair, task.report_id)
    assert in_a == in_b
    assert in_a.record is not None
    assert in_a.record.state is State.CANCELLED
    assert in_a.record.cancel_requested
    assert in_a.record.result is None


def _object_versions(region: Region, bucket: str, key: str) -> list[Any]:
    listing = region.services.s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


async def test_a_delete_in_b_while_a_s_worker_writes_stays_deleted_everywhere(
    pair: Pair,
) -> None:
    home, peer = pair.home, pair.peer
    # A result large enough for S3 (A's bucket)
    task: TaskRecord = make_task(home.settings, seed=23)
    task.request.params.update({"output_rows": 4000, "output_bytes": 2_000_000})

    # Given A's worker claimed the report and replication was cut
    paused = PausedRun(pair, cut=True, standby_margin_seconds=3.0)
    run = await paused.start(task)
    # When B's edge deletes the report while A's worker is still generating it ...
    async with edge_store(peer) as store:
        await store.delete_report(task.report_id, TENANT, deadline=None)
    paused.go.set()
    result = await run
    runner = paused.runner
    # ... A's worker, which cannot see B's tombstone yet, writes its result and the report
    assert result.outcome is Outcome.SUCCEEDED
    key = resources.result_object_key(task.report_id)
    assert _object_versions(home, home.aws.results_bucket, key)
    # Then, once replication resumes, A's late write wins LWW over B's deletion of the
    # report item, but never over the tombstone: both regions say deleted at once ...
    _resume(pair.replicator)
    in_a, in_b = await _views(pair, task.report_id)
    assert in_a.deleted
    assert in_b.deleted
    # ... and A's worker, looking again a replication margin after its write, removes the
    # report item and its S3 object; the removal replicates to B
    await asyncio.to_thread(_eventually, lambda: runner.late_deletes.removed >= 1)
    assert runner.late_deletes.removed == 1
    pair.replicator.drain()
    in_a, in_b = await _views(pair, task.report_id)
    assert (in_a.record, in_b.record) == (None, None)
    assert in_a.deleted
    assert in_b.deleted
    assert _object_versions(home, home.aws.results_bucket, key) == []
    assert _object_versions(peer, peer.aws.results_bucket, key) == []
