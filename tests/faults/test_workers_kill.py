"""Scenario 3: a worker SIGKILLed mid-report (the Fargate queue worker, and the stream
function's Lambda execution environment) -> the task is redelivered and the report
completes once. Figure: recovery time (kill -> SUCCEEDED). Also: an idle queue worker exits
on SIGTERM within ~2 s (its receive waits are sliced). Both start as deployed: the worker
from its task definition, the function from its asset fed by the template's mapping."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reportgrid import resources, tasks
from reportgrid.local.launch import LocalDeployment
from reportgrid.states import State
from tests.faults.conftest import STREAM_WORKER, Functions, execution_environments
from tests.integration.workers.conftest import Region, make_task
from tests.integration.workers.test_queue_worker import WorkerProcess

LEASE_SECONDS = "3"  # not less: see tests/integration/workers/test_queue_worker.py
# A dead run's task comes back after its lease: seconds here (launch.TUNING_OVERRIDES). The
# receive wait stays the deployed long poll (20 s): the SIGTERM test is about that wait.
TUNING = {resources.ENV.WORKER_LEASE_SECONDS: LEASE_SECONDS}


@pytest.fixture
def workers(deployment: LocalDeployment, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    started: list[WorkerProcess] = []

    def start(name: str) -> WorkerProcess:
        worker = WorkerProcess(deployment, tmp_path / f"{name}.log", TUNING)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill_group()


@pytest.mark.slow
def test_queue_worker_killed_mid_report_is_redelivered_and_completes_once(
    region: Region,
    workers: Callable[[str], WorkerProcess],
    figure: Callable[..., None],
) -> None:
    task = make_task(region.settings, "synthetic_heavy", {"cpu_ms": 1500, "output_rows": 20})
    region.sqs.send_message(
        QueueUrl=region.settings.heavy_queue_url, MessageBody=tasks.encode_text(task)
    )
    first = workers("worker-1")
    region.wait_for(task.report_id, lambda r: r.state is State.RUNNING, timeout=30)

    first.kill_group()
    killed_at = time.monotonic()
    second = workers("worker-2")
    done = region.wait_for(task.report_id, lambda r: r.terminal, timeout=40)
    recovery = time.monotonic() - killed_at

    assert done.state is State.SUCCEEDED
    assert done.attempts == 2  # the killed run, and the one that completed
    assert done.result is not None
    assert done.result.row_count == 20
    stopped = time.monotonic()
    assert second.stop() == 0
    figure(
        "3 SIGKILL queue worker",
        completed=1,
        attempts=done.attempts,
        recovery_s=round(recovery, 2),
        lease_s=float(LEASE_SECONDS),
        sigterm_exit_s=round(time.monotonic() - stopped, 2),
    )


def test_idle_queue_worker_exits_promptly_on_sigterm(
    deployment: LocalDeployment, tmp_path: Path, figure: Callable[..., None]
) -> None:
    log = tmp_path / "worker.log"
    worker = WorkerProcess(deployment, log, TUNING)
    try:  # it is polling (WorkerProcess waits for that)
        time.sleep(0.5)  # inside a receive wait (20 s, the deployed long poll)
        started = time.monotonic()
        code = worker.stop()
        took = time.monotonic() - started
    finally:
        if worker.proc.poll() is None:
            worker.kill_group()
    assert code == 0
    assert took < 2.5, took
    # And it sat in its receive waits: no call of its loop failed (a denied one warns)
    logged = log.read_text()
    assert not re.search(r" (WARNING|ERROR) ", logged), logged[-3000:]
    figure("3 idle worker SIGTERM", exit_code=code, exit_s=round(took, 2), long_poll_s=20)


@pytest.mark.slow
def test_stream_function_killed_mid_report_is_redelivered_and_completes_once(
    region: Region, functions: Functions, figure: Callable[..., None]
) -> None:
    # Given the stream function (its asset, in its own execution environment) running a
    # report, fed by the Kinesis event source configured from the template's mapping
    task = make_task(region.settings, "synthetic", {"cpu_ms": 1500, "output_rows": 10})
    region.kinesis.put_record(
        StreamName=region.settings.task_stream_name,
        Data=tasks.encode(task),
        PartitionKey=task.report_id,
    )
    host = functions.host(STREAM_WORKER, TUNING)
    runner = functions.kinesis(host)
    region.wait_for(task.report_id, lambda r: r.state is State.RUNNING, timeout=30)

    # When its execution environment is SIGKILLed mid-report (as an OOM kill or a crashed
    # runtime ends it): the invocation fails, and the event source retries the batch
    environments = execution_environments(host)
    assert len(environments) == 1
    environments[0].kill()
    killed_at = time.monotonic()
    assert region.get(task.report_id).state is State.RUNNING  # type: ignore[union-attr]

    # Then the retry starts a new environment (a cold start), waits out the dead run's
    # lease and completes the report once
    done = region.wait_for(task.report_id, lambda r: r.terminal, timeout=40)
    recovery = time.monotonic() - killed_at
    assert done.state is State.SUCCEEDED
    assert done.attempts == 2
    assert done.result is not None
    assert done.result.row_count == 10
    assert host.cold_starts == 2
    assert runner.invocations == 2
    figure(
        "3 SIGKILL Lambda execution environment",
        completed=1,
        attempts=done.attempts,
        recovery_s=round(recovery, 2),
        lease_s=float(LEASE_SECONDS),
        cold_starts=host.cold_starts,
    )
