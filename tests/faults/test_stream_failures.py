"""Scenario 15: Lambda gives up on a Kinesis batch. The deployed stream function (its asset,
in its own execution environment), fed by the local Kinesis event source configured from the
template's mapping, fails every attempt (an injected outage of the function) until the
mapping's retries run out; the event source sends the batches' on-failure destination
records to the stream-failure queue, as Lambda does. The deployed drain function, behind its
SQS event source, reads the records back from the stream and re-drives their tasks to the
heavy queue, where the deployed queue worker completes them: every acknowledged task ends
SUCCEEDED, once. Records that left the stream before the drain could read them are reported
(logged and counted), not retried, and crash nothing.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reportgrid import resources, tasks
from reportgrid.local.kinesis_runner import ON_FAILURE_FILE
from reportgrid.local.lambda_host import FunctionError, LambdaHost
from reportgrid.local.launch import LocalDeployment
from reportgrid.states import State
from tests.faults.conftest import STREAM_FAILURE_DRAIN, STREAM_WORKER, Functions, json_logs
from tests.integration.stream_failures.helpers import (
    emitted,
    failure_queue,
    heavy_bodies,
    receive_all,
)
from tests.integration.workers.conftest import Region, make_task
from tests.integration.workers.test_queue_worker import WorkerProcess

GIVEN_UP_TIMEOUT = 30.0
EXPIRED_MESSAGE = "records of a given-up batch are no longer in the stream"


class Outage:
    """The stream function failing every invocation while `on` (a bug, a bad deploy).

    It wraps the function's host, the callable the event source invokes: to the event
    source an outage is nothing but a function error on every invocation, so the deployed
    asset runs unchanged (a switch inside it, or a variable the template does not carry,
    would be code and configuration AWS never runs)."""

    def __init__(self, host: LambdaHost) -> None:
        self.host = host
        self.on = threading.Event()
        self.failed = 0
        self.failed_at: dict[str, list[float]] = {}  # shard -> when each invocation failed

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        if self.on.is_set():
            self.failed += 1
            shard = event["Records"][0]["eventID"].split(":")[0]
            self.failed_at.setdefault(shard, []).append(time.monotonic())
            raise FunctionError("Unhandled", "injected: the stream function fails every attempt")
        return self.host(event, context)

    def longest_retry_wait(self) -> float:
        """The longest pause between two failed invocations on one shard. Every record
        is in the first batch of its shard, so each pause is a retry's."""
        gaps = [b - a for times in self.failed_at.values() for a, b in itertools.pairwise(times)]
        return max(gaps, default=0.0)


@pytest.fixture
def given_up(functions: Functions) -> Callable[[int], Path]:
    """Put `count` tasks nobody can process, run the stream function's event source (the
    function behind an outage) until it gave up on all of them; returns the on-failure log."""

    def run(count: int) -> Path:
        host = functions.host(STREAM_WORKER)
        outage = Outage(host)
        outage.on.set()
        runner = functions.kinesis(host, invoke=outage)
        assert runner._state_dir is not None
        log = runner._state_dir / ON_FAILURE_FILE
        deadline = time.monotonic() + GIVEN_UP_TIMEOUT
        while _given_up_records(log) < count:
            assert time.monotonic() < deadline, f"runner gave up on {_given_up_records(log)}"
            time.sleep(0.05)
        outage.on.clear()
        # Lambda retries a failed batch after its backoff, not after another batching
        # window (that is for gathering records; kinesis_runner.run_shard cites the docs)
        window = runner.config.batching_window_seconds
        waited = outage.longest_retry_wait()
        assert waited < window, (
            f"a failed batch waited {waited:.2f} s for its retry: a batching window "
            f"({window:g} s) held it"
        )
        return log

    return run


def _given_up_records(log: Path) -> int:
    if not log.exists():
        return 0
    lines = log.read_text().splitlines()
    return sum(json.loads(line)["KinesisBatchInfo"]["batchSize"] for line in lines)


def _put_tasks(region: Region, count: int, heavy: int) -> list[Any]:
    made = [
        make_task(
            region.settings,
            "synthetic_heavy" if i < heavy else "synthetic",
            {"output_rows": 3, "seed": i},
        )
        for i in range(count)
    ]
    for task in made:  # as the edge acknowledges them: in the stream
        region.kinesis.put_record(
            StreamName=region.settings.task_stream_name,
            Data=tasks.encode(task),
            PartitionKey=task.report_id,
        )
    return made


def _queue_empty(region: Region, url: str) -> bool:
    attrs = region.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"])
        + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        == 0
    )


@pytest.fixture
def drain(functions: Functions) -> Callable[[], Path]:
    """Start the deployed drain function behind its SQS event source (the template's
    mapping), as `reportgrid-dev` runs it; returns the function's log."""

    def start() -> Path:
        host = functions.host(STREAM_FAILURE_DRAIN)
        functions.sqs(host)
        return host.log_file

    return start


@pytest.fixture
def queue_worker(
    deployment: LocalDeployment, tmp_path: Path
) -> Iterator[Callable[[], WorkerProcess]]:
    """Start the deployed queue worker (its task definition, untuned)."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        started.append(WorkerProcess(deployment, tmp_path / "worker.log"))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill_group()


def test_a_given_up_batch_is_redriven_and_every_report_succeeds(
    region: Region,
    given_up: Callable[[int], Path],
    drain: Callable[[], Path],
    queue_worker: Callable[[], WorkerProcess],
    figure: Callable[..., None],
) -> None:
    # Given 6 acknowledged tasks (2 heavy) the stream function failed on until the runner
    # gave up on them: no report was written, and without a drain none ever would be
    made = _put_tasks(region, 6, heavy=2)
    log = given_up(len(made))
    failure_records = len(log.read_text().splitlines())
    assert all(region.get(task.report_id) is None for task in made)

    # When the drain and the queue worker run
    started = time.monotonic()
    drain_log = drain()
    worker = queue_worker()
    ended = [region.wait_for(t.report_id, lambda r: r.terminal, timeout=60) for t in made]
    recovered_s = time.monotonic() - started
    assert worker.stop() == 0
    # And every on-failure record is delivered to the drain again (SQS is at least once),
    # with no queue worker left to hide what it might re-drive
    for line in log.read_text().splitlines():
        region.sqs.send_message(QueueUrl=failure_queue(region), MessageBody=line)
    deadline = time.monotonic() + 20
    while not _queue_empty(region, failure_queue(region)):
        assert time.monotonic() < deadline, "the drain did not take the redelivery"
        time.sleep(0.1)
    redriven_again = len(heavy_bodies(region))

    # Then every report SUCCEEDED in one run; the redelivery re-drove nothing
    assert [r.state for r in ended] == [State.SUCCEEDED] * len(made)
    assert [r.attempts for r in ended] == [1] * len(made)
    assert redriven_again == 0
    assert [region.get(t.report_id).revision for t in made] == [r.revision for r in ended]  # type: ignore[union-attr]
    assert receive_all(region, region.aws.stream_failure_dlq_url) == []
    assert "re-drove a given-up batch" in drain_log.read_text()
    figure(
        "15 Kinesis batch given up (drained)",
        acked=len(made),
        given_up=len(made),
        on_failure_records=failure_records,
        succeeded=sum(r.state is State.SUCCEEDED for r in ended),
        lost=0,
        duplicate_runs=sum(r.attempts - 1 for r in ended),
        redelivery_redriven=redriven_again,
        recovery_s=round(recovered_s, 2),
    )


def test_records_gone_from_the_stream_are_reported_and_crash_nothing(
    region: Region,
    given_up: Callable[[int], Path],
    functions: Functions,
    figure: Callable[..., None],
) -> None:
    # Given 4 tasks given up on, whose records then left the stream before any drain ran
    # (past the retention; here the stream is re-created, so its shards hold none of them)
    made = _put_tasks(region, 4, heavy=0)
    given_up(len(made))
    name = region.settings.task_stream_name
    region.kinesis.delete_stream(StreamName=name)
    region.kinesis.create_stream(StreamName=name, ShardCount=2)
    region.kinesis.get_waiter("stream_exists").wait(StreamName=name)

    # When the deployed drain function handles the failure queue, through its event source
    url = failure_queue(region)
    host = functions.host(STREAM_FAILURE_DRAIN)
    source = functions.sqs_source(host, wait_seconds=0)
    while source.poll_once():
        pass

    # Then every message was handled (none retried, none in the DLQ), nothing was
    # re-driven, and each lost record is in the function's log with its batch
    lost = [line for line in json_logs(host.log_file) if line.get("message") == EXPIRED_MESSAGE]
    assert sum(line["expired"] for line in lost) == len(made)
    output = host.log_file.read_text()
    assert emitted(output, resources.METRIC.STREAM_RECORDS_EXPIRED) == len(made)
    assert _queue_empty(region, url)
    assert receive_all(region, region.aws.stream_failure_dlq_url) == []
    assert heavy_bodies(region) == []
    figure(
        "15 Kinesis batch given up, records expired",
        given_up=len(made),
        expired_reported=sum(line["expired"] for line in lost),
        redriven=0,
        failed_messages=0,
    )
