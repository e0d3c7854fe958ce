"""Scenario 1: duplicate delivery and lost replies. Each task is delivered several times
concurrently while DynamoDB writes commit but lose their replies (a botocore `after-call`
hook raises a connection error after the server committed the write): every report runs
once. Figure: replays, lost replies, duplicates (reports run more than once) = 0."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ConnectionClosedError

from functions.runner import Outcome, is_transient_error
from reportgrid.states import State
from tests.integration.workers.conftest import Region, make_task

TASKS = 25
DELIVERIES = 4  # per task, concurrently: 100 replays


def test_concurrent_duplicates_with_lost_replies_run_each_report_once(
    region: Region, figure: Callable[..., None]
) -> None:
    ddb = region.services.store._ddb
    lock = threading.Lock()
    writes = 0
    lost = 0

    def drop_every_third_reply(http_response: Any, **_: Any) -> None:
        nonlocal writes, lost
        if http_response.status_code != 200:
            return
        with lock:
            writes += 1
            drop = writes % 3 == 0
            lost += drop
        if drop:  # committed on the server; the caller never hears of it
            raise ConnectionClosedError(endpoint_url="moto")

    tasks = [
        make_task(region.settings, "synthetic", {"output_rows": 2, "seed": n}) for n in range(TASKS)
    ]
    ddb.meta.events.register("after-call.dynamodb.PutItem", drop_every_third_reply)
    try:
        deliveries = [task for task in tasks for _ in range(DELIVERIES)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda t: _run_to_the_end(region, t), deliveries))
    finally:
        ddb.meta.events.unregister("after-call.dynamodb.PutItem", drop_every_third_reply)

    succeeded = [r for r in results if r is Outcome.SUCCEEDED]
    duplicates = 0
    for task in tasks:
        record = region.get(task.report_id)
        assert record is not None
        assert record.state is State.SUCCEEDED, record
        duplicates += record.attempts - 1  # a second run would have claimed it again
    assert lost > 0
    assert duplicates == 0
    assert len(succeeded) == TASKS  # each report's run was reported done exactly once
    figure(
        "1 duplicates + lost replies",
        replays=len(deliveries),
        lost_replies=lost,
        duplicates=duplicates,
        reports_succeeded=TASKS,
    )


def _run_to_the_end(region: Region, task: Any) -> Outcome:
    """One delivery, as a runtime handles it: BUSY means "deliver again later"; transient
    errors are redelivered too."""
    for _ in range(200):
        try:
            result = region.runner().run(task)
        except Exception as err:  # a lost reply the store could not recognise: redeliver
            assert is_transient_error(err), err  # noqa: PT017 -- a redelivery loop
            continue
        if result.outcome is not Outcome.BUSY:
            return result.outcome
        threading.Event().wait(0.05)
    raise AssertionError(f"{task.report_id} stayed busy")
