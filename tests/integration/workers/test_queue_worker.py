"""The Fargate queue worker as ECS starts it (the task definition's argv and environment
from the synthesized template), and its loop in-process for the retry bound."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.queue_worker.worker import QueueWorker
from functions.runner import Runner, Services
from reportgrid import resources, tasks
from reportgrid.local.bootstrap import client
from reportgrid.local.launch import LocalDeployment
from reportgrid.states import State
from tests.integration.workers.conftest import Region, make_task
from tests.integration.workers.test_runs import _request_cancel

# Not under 3 s: the worker renews every lease / 3, and on a busy 2-core machine a 2 s
# lease was lost mid-run (a second run then counted).
LEASE_SECONDS = "3"
READY = "queue worker polling"  # what it logs when it starts receiving
# A lost worker's task comes back after the lease, and an idle one polls in short waits:
# seconds here rather than the deployed minute (launch.TUNING_OVERRIDES).
TUNING = {
    resources.ENV.WORKER_LEASE_SECONDS: LEASE_SECONDS,
    resources.ENV.QUEUE_WAIT_SECONDS: "1",
}


class WorkerProcess:
    """`deployment.container("worker")`: the queue worker's argv and whole environment as the
    task definition gives them, plus the test's tuning (launch.TUNING_OVERRIDES)."""

    def __init__(
        self, deployment: LocalDeployment, log: Path, tuning: dict[str, str] | None = None
    ) -> None:
        process = deployment.container("worker", tuning)
        self.log = log
        self._log = log.open("ab")
        self._log_start = self._log.tell()  # the log may hold an earlier worker's lines
        self.proc = subprocess.Popen(
            process.argv,
            cwd=log.parent,  # the image's WORKDIR holds nothing importable either
            env=process.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the pool dies with it
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until it polls; a worker that cannot start fails here with its own words (a
        setting the template lacks, a denied call) rather than as a report that never runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log.open("rb") as out:
                out.seek(self._log_start)
                text = out.read().decode(errors="replace")
            if READY in text:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the queue worker exited ({self.proc.returncode}):\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"the queue worker did not poll within {timeout} s")

    def kill_group(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._log.close()
        return code


@pytest.fixture
def start_worker(deployment: LocalDeployment, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(deployment, tmp_path / "worker.log", TUNING)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill_group()


def _enqueue(region: Region, task: Any) -> None:
    region.sqs.send_message(
        QueueUrl=region.settings.heavy_queue_url, MessageBody=tasks.encode_text(task)
    )


def _queue_empty(region: Region) -> bool:
    attrs = region.sqs.get_queue_attributes(
        QueueUrl=region.settings.heavy_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attrs["ApproximateNumberOfMessages"]
        == "0"
        == attrs["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.slow
def test_killed_worker_task_is_redelivered_and_completes_once(
    region: Region, start_worker: Any
) -> None:
    # Given a worker running a long heavy report
    task = make_task(
        region.settings, "synthetic_heavy", {"cpu_ms": 1500, "output_rows": 50, "seed": 3}
    )
    _enqueue(region, task)
    first = start_worker()
    running = region.wait_for(task.report_id, lambda r: r.state is State.RUNNING)
    assert running.attempts == 1

    # When it is killed mid-report
    first.kill_group()
    assert region.get(task.report_id).state is State.RUNNING  # type: ignore[union-attr]

    # Then after the lease another worker takes the redelivered task and completes it once
    second = start_worker()
    done = region.wait_for(task.report_id, lambda r: r.terminal, timeout=40)
    assert done.state is State.SUCCEEDED
    assert done.attempts == 2
    assert done.result is not None
    assert done.result.row_count == 50
    deadline = time.monotonic() + 10
    while not _queue_empty(region) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _queue_empty(region)  # deleted after the terminal write
    assert second.stop() == 0


@pytest.mark.slow
def test_sigterm_finishes_the_held_report_and_exits_zero(region: Region, start_worker: Any) -> None:
    task = make_task(region.settings, "synthetic_heavy", {"cpu_ms": 1500, "output_rows": 5})
    _enqueue(region, task)
    worker = start_worker()
    region.wait_for(task.report_id, lambda r: r.state is State.RUNNING)
    assert worker.stop() == 0
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.SUCCEEDED
    assert _queue_empty(region)


@pytest.mark.slow
def test_cancel_during_a_long_heavy_report(region: Region, start_worker: Any) -> None:
    task = make_task(region.settings, "synthetic_heavy", {"cpu_ms": 60_000, "output_rows": 5})
    _enqueue(region, task)
    worker = start_worker()
    region.wait_for(task.report_id, lambda r: r.state is State.RUNNING)
    _request_cancel(region, task.report_id)
    record = region.wait_for(task.report_id, lambda r: r.terminal, timeout=15)
    assert record.state is State.CANCELLED
    assert worker.stop() == 0


def test_last_allowed_receive_failing_ends_the_report_failed(region: Region) -> None:
    # Given results that cannot be stored (S3 refuses connections) and one allowed receive
    services = Services(
        settings=region.settings.model_copy(update={"worker_lease_seconds": 2.0}),
        store=region.services.store,
        s3=client("s3", region.settings.region, "http://127.0.0.1:1"),
        notifier=region.services.notifier,
    )
    worker = QueueWorker(
        Runner(services),
        sqs=region.sqs,
        queue_url=region.settings.heavy_queue_url,
        concurrency=1,
        lease_seconds=2,
        wait_seconds=1,
        max_receives=1,
    )
    task = make_task(
        region.settings, "synthetic_heavy", {"output_rows": 2000, "output_bytes": 800_000}
    )
    _enqueue(region, task)
    loop = threading.Thread(target=worker.run, kwargs={"stop_grace_seconds": 10})
    loop.start()
    try:
        record = region.wait_for(task.report_id, lambda r: r.terminal, timeout=20)
    finally:
        worker.stop()
        loop.join(15)
    assert record.state is State.FAILED
    assert record.error_reason == "RETRIES_EXHAUSTED"
    assert _queue_empty(region)
