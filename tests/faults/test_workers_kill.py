"""Scenario 3: a worker SIGKILLed mid-report (the Fargate queue worker, and the local Lambda
runner running the real handler) -> the task is redelivered and the report completes once.
Figure: recovery time (kill -> SUCCEEDED). Also: an idle queue worker exits on SIGTERM
within ~2 s (its receive waits are sliced)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reportgrid import resources, tasks
from reportgrid.states import State
from tests.faults.conftest import ROOT, wait_for_log
from tests.integration.workers.conftest import Region, make_task
from tests.integration.workers.test_queue_worker import WorkerProcess

LEASE_SECONDS = "2"


@pytest.fixture
def worker_env(region_env: dict[str, str]) -> dict[str, str]:
    return {
        **region_env,
        resources.ENV.WORKER_LEASE_SECONDS: LEASE_SECONDS,
        resources.ENV.QUEUE_WAIT_SECONDS: "20",  # production's long poll
        resources.ENV.WORKER_CONCURRENCY: "1",
    }


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in started:
        if isinstance(proc, WorkerProcess):
            if proc.proc.poll() is None:
                proc.kill_group()
        elif proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.slow
def test_queue_worker_killed_mid_report_is_redelivered_and_completes_once(
    region: Region,
    worker_env: dict[str, str],
    processes: list[Any],
    tmp_path: Path,
    figure: Callable[..., None],
) -> None:
    task = make_task(region.settings, "synthetic_heavy", {"cpu_ms": 1500, "output_rows": 20})
    region.sqs.send_message(
        QueueUrl=region.settings.heavy_queue_url, MessageBody=tasks.encode_text(task)
    )
    first = WorkerProcess(worker_env, tmp_path / "worker-1.log")
    processes.append(first)
    region.wait_for(task.report_id, lambda r: r.state is State.RUNNING, timeout=30)

    first.kill_group()
    killed_at = time.monotonic()
    second = WorkerProcess(worker_env, tmp_path / "worker-2.log")
    processes.append(second)
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
    region: Region, worker_env: dict[str, str], tmp_path: Path, figure: Callable[..., None]
) -> None:
    log = tmp_path / "worker.log"
    worker = WorkerProcess(worker_env, log)
    try:
        wait_for_log(log, "queue worker polling", worker.proc, 30)
        time.sleep(1.5)  # inside a receive wait
        started = time.monotonic()
        code = worker.stop()
        took = time.monotonic() - started
    finally:
        if worker.proc.poll() is None:
            worker.kill_group()
    assert code == 0
    assert took < 2.5, took
    figure("3 idle worker SIGTERM", exit_code=code, exit_s=round(took, 2), long_poll_s=20)


@pytest.mark.slow
def test_local_lambda_runner_killed_mid_report_is_redelivered_and_completes_once(
    region: Region,
    worker_env: dict[str, str],
    processes: list[Any],
    tmp_path: Path,
    figure: Callable[..., None],
) -> None:
    # Given the local Kinesis runner process invoking the real Lambda handler
    task = make_task(region.settings, "synthetic", {"cpu_ms": 2500, "output_rows": 10})
    region.kinesis.put_record(
        StreamName=region.settings.task_stream_name,
        Data=tasks.encode(task),
        PartitionKey=task.report_id,
    )

    def start_runner(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reportgrid.local.kinesis_runner",
                    "--state-dir",
                    str(tmp_path / "runner-state"),
                ],
                cwd=ROOT,
                env={**os.environ, **worker_env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(proc)
        return proc

    first = start_runner("runner-1")
    region.wait_for(task.report_id, lambda r: r.state is State.RUNNING, timeout=30)

    # When the runner (the Lambda's execution environment) is killed mid-report
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    killed_at = time.monotonic()
    assert region.get(task.report_id).state is State.RUNNING  # type: ignore[union-attr]

    # Then a new runner resumes from the checkpoint, redelivers the record, waits out the
    # dead run's lease and completes the report once
    start_runner("runner-2")
    done = region.wait_for(task.report_id, lambda r: r.terminal, timeout=40)
    recovery = time.monotonic() - killed_at
    assert done.state is State.SUCCEEDED
    assert done.attempts == 2
    assert done.result is not None
    assert done.result.row_count == 10
    figure(
        "3 SIGKILL Lambda runner",
        completed=1,
        attempts=done.attempts,
        recovery_s=round(recovery, 2),
        lease_s=float(LEASE_SECONDS),
    )
