"""Scenario 15: Lambda gives up on a Kinesis batch. The real stream handler, fed by the
local Kinesis runner, fails every attempt (an injected outage of the function) until the
runner's retries run out; the runner sends the batches' on-failure destination records to
the stream-failure queue, as Lambda does. The drain
(`python -m reportgrid.local.stream_failure_drain`, the real handler behind the local SQS
event source) reads the records back from the stream
and re-drives their tasks to the heavy queue, where the real queue worker completes them:
every acknowledged task ends SUCCEEDED, once. Records that left the stream before the
drain could read them are reported (logged and counted), not retried, and crash nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.runner import Runner
from functions.stream_worker import handler as stream
from reportgrid import resources, tasks
from reportgrid.local.kinesis_runner import ON_FAILURE_FILE, KinesisRunner, MappingConfig
from reportgrid.local.sqs_source import SqsEventSource
from reportgrid.states import State
from tests.faults.conftest import ROOT
from tests.integration.stream_failures.helpers import (
    configured_drain,
    emitted,
    failure_queue,
    heavy_bodies,
    queue_worker,
    receive_all,
)
from tests.integration.workers.conftest import Region, make_task

GIVEN_UP_TIMEOUT = 30.0


class Outage:
    """The stream function failing every invocation while `on` (a bug, a bad deploy)."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self.failed = 0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        if self.on.is_set():
            self.failed += 1
            raise RuntimeError("injected: the stream function fails every attempt")
        return stream.handler(event, context)


@pytest.fixture
def given_up(region: Region, tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Put `count` tasks nobody can process, run the local Kinesis runner (real stream
    handler behind an outage) until it gave up on all of them; returns the on-failure log."""
    runners: list[tuple[KinesisRunner, list[threading.Thread]]] = []
    stream.configure(
        stream.Dependencies(
            runner=Runner(region.services, owner_prefix="lambda-faults"),
            sqs=region.sqs,
            heavy_queue_url=region.settings.heavy_queue_url,
        )
    )

    def run(count: int) -> Path:
        outage = Outage()
        outage.on.set()
        state = tmp_path / "kinesis"
        runner = KinesisRunner(
            outage,
            stream_name=region.settings.task_stream_name,
            region=region.aws.region,
            endpoint_url=region.aws.endpoint_url,
            state_dir=state,
            failure_queue_url=failure_queue(region),
            config=MappingConfig(batch_size=10, max_retry_attempts=2, poll_interval_seconds=0.05),
        )
        runners.append((runner, runner.start()))
        log = state / ON_FAILURE_FILE
        deadline = time.monotonic() + GIVEN_UP_TIMEOUT
        while _given_up_records(log) < count:
            assert time.monotonic() < deadline, f"runner gave up on {_given_up_records(log)}"
            time.sleep(0.05)
        outage.on.clear()
        return log

    yield run
    for runner, threads in runners:
        runner.stop()
        for thread in threads:
            thread.join(10)
    stream.configure(None)


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
def drain_process(region_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """The drain (`python -m reportgrid.local.stream_failure_drain`) in the test region, as
    `reportgrid-dev` runs it."""
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "drain.log"

    def start() -> Path:
        with log.open("ab") as out:
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "reportgrid.local.stream_failure_drain",
                        "--visibility-timeout",
                        "2",
                    ],
                    cwd=ROOT,
                    env={**os.environ, **region_env, "POWERTOOLS_METRICS_DISABLED": "true"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        return log

    yield start
    for process in started:
        process.terminate()
        assert process.wait(15) == 0, log.read_text()[-3000:]


def test_a_given_up_batch_is_redriven_and_every_report_succeeds(
    region: Region,
    given_up: Callable[[int], Path],
    drain_process: Callable[[], Path],
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
    drain_log = drain_process()
    with queue_worker(region):
        ended = [region.wait_for(t.report_id, lambda r: r.terminal, timeout=60) for t in made]
        recovered_s = time.monotonic() - started
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
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
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

    # When the drain handles the failure queue
    url = failure_queue(region)
    with configured_drain(region) as drain:
        source = SqsEventSource(
            drain.handler, sqs=region.sqs, queue_url=url, region=region.aws.region, wait_seconds=0
        )
        while source.poll_once():
            pass

    # Then every message was handled (none retried, none in the DLQ), nothing was
    # re-driven, and each lost record is in the log with its batch
    lost = [r.__dict__ for r in caplog.records if "no longer in the stream" in r.getMessage()]
    assert sum(record["expired"] for record in lost) == len(made)
    assert emitted(capsys.readouterr().out, resources.METRIC.STREAM_RECORDS_EXPIRED) == len(made)
    assert _queue_empty(region, url)
    assert receive_all(region, region.aws.stream_failure_dlq_url) == []
    assert heavy_bodies(region) == []
    figure(
        "15 Kinesis batch given up, records expired",
        given_up=len(made),
        expired_reported=sum(record["expired"] for record in lost),
        redriven=0,
        failed_messages=0,
    )
