"""Issue 19 (hostile tenants), the workers' half: one tenant's report can neither break the
heavy path for everyone nor run, grow or be retried without bound.

- 19.2 a failed heavy report (its error crosses the pool's process boundary) and a pool
  child SIGKILLed mid-report (as the OOM killer does): later reports of another tenant
  still succeed on the deployed queue worker (its task definition's argv and environment);
- 19.5 a report past its path's run-time limit ends FAILED TIME_LIMIT_EXCEEDED, once;
- 19.6 a permanent failure with a huge message (16,000 columns) runs once;
- 19.7 an S3 input over the size cap ends INPUT_TOO_LARGE before download; a tiny Parquet
  file holding hundreds of MB of text ends RESOURCE_LIMIT with the worker's memory under a
  measured ceiling, and the next report succeeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest

from functions.queue_worker.pool import GeneratorPool
from functions.queue_worker.worker import QueueWorker
from functions.runner import INPUT_TOO_LARGE, Outcome, RunCaps, Runner, Services
from reportgrid import resources, tasks
from reportgrid.engine.request import RESOURCE_LIMIT, TIME_LIMIT_EXCEEDED
from reportgrid.limits import MAX_ERROR_MESSAGE_BYTES
from reportgrid.local.launch import LocalDeployment
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.workers.conftest import TENANT, Region, make_task
from tests.integration.workers.test_queue_worker import WorkerProcess

OTHER_TENANT = "tenant-b"


def _input_bucket(region: Region) -> str:
    """The deployment's input bucket (one is made up when the region configures none)."""
    return (region.settings.input_buckets or ("reportgrid-test-inputs",))[0]


def _put_input(region: Region, name: str, body: bytes) -> str:
    """An object under the tenant's own input prefix; its s3:// URI."""
    s3 = region.services.s3
    bucket = _input_bucket(region)
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)
    key = resources.tenant_input_prefix(TENANT) + name
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def _services_reading_inputs(region: Region) -> Services:
    """The region's services with its input bucket configured."""
    settings = region.settings.model_copy(update={"input_buckets": (_input_bucket(region),)})
    return dataclasses.replace(region.services, settings=settings)


def _as_tenant(region: Region, task: TaskRecord, tenant: str) -> TaskRecord:
    task.tenant = tenant
    task.report_id = region.settings.id_codec().new(tenant, region.settings.region).value
    return task


def _enqueue(region: Region, *batch: TaskRecord) -> None:
    for task in batch:
        region.sqs.send_message(
            QueueUrl=region.settings.heavy_queue_url, MessageBody=tasks.encode_text(task)
        )


def _heavy_synthetic(region: Region, rows: int = 7, cpu_ms: int = 0) -> TaskRecord:
    task = make_task(region.settings, "synthetic_heavy", {"output_rows": rows, "cpu_ms": cpu_ms})
    return _as_tenant(region, task, OTHER_TENANT)


def _missing_column_summary(region: Region, csv: bytes, name: str) -> TaskRecord:
    return make_task(
        region.settings,
        "summary",
        {"group_by": ["no_such_column"], "aggregates": [{"op": "count"}]},
        s3_uri=_put_input(region, name, csv),
    )


# A lost worker's task comes back after the lease, an idle one polls in short waits:
# seconds here rather than the deployed minute (launch.TUNING_OVERRIDES). Not under 3 s: the
# worker renews every lease / 3, and on a busy 2-core machine a 2 s lease was lost mid-run.
TUNING = {resources.ENV.WORKER_LEASE_SECONDS: "3", resources.ENV.QUEUE_WAIT_SECONDS: "1"}


@pytest.fixture
def start_worker(deployment: LocalDeployment, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start the deployed queue worker (its task definition) with the tuning, plus the
    test's own (keyword arguments, each one of launch.TUNING_OVERRIDES)."""
    started: list[WorkerProcess] = []

    def start(**tuning: str) -> WorkerProcess:
        worker = WorkerProcess(deployment, tmp_path / "worker.log", {**TUNING, **tuning})
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill_group()


def _done(region: Region, report_id: str, timeout: float = 60) -> ReportRecord:
    return region.wait_for(report_id, lambda r: r.terminal, timeout=timeout)


def _pool_children(worker: WorkerProcess) -> list[psutil.Process]:
    """The pool's generator processes: children of the forkserver, itself a child of the
    worker (the worker's direct children are the forkserver and resource tracker)."""
    parent = psutil.Process(worker.proc.pid)
    return [p for p in parent.children(recursive=True) if p.ppid() != parent.pid]


# --- 19.2 -----------------------------------------------------------------------------------


def test_a_failed_heavy_report_leaves_the_heavy_path_working(
    region: Region, start_worker: Callable[..., WorkerProcess], figure: Callable[..., None]
) -> None:
    # Given tenant A's S3 summary naming a missing column, then tenant B's heavy reports
    failing = _missing_column_summary(region, b"region,amount\neu,1\nus,2\n", "a.csv")
    later = [_heavy_synthetic(region, rows=3 + i) for i in range(3)]
    _enqueue(region, failing, *later)

    # When the deployed queue worker runs them (through its process pool)
    worker = start_worker()
    failed = _done(region, failing.report_id)
    outcomes = [_done(region, t.report_id) for t in later]
    assert worker.stop() == 0

    # Then A's report FAILED for its own reason, once, and every later report succeeded
    assert failed.state is State.FAILED
    assert failed.error_reason == "MISSING_COLUMN"
    assert failed.attempts == 1
    later_failed = sum(r.state is not State.SUCCEEDED for r in outcomes)
    assert later_failed == 0, [(r.state, r.error_reason) for r in outcomes]
    assert [r.result.row_count for r in outcomes if r.result] == [3, 4, 5]
    figure("19.2 failed heavy report", first="FAILED/MISSING_COLUMN", later=3, later_failed=0)


@pytest.mark.slow
def test_a_pool_child_killed_mid_report_is_retried_and_later_reports_run(
    region: Region, start_worker: Callable[..., WorkerProcess], figure: Callable[..., None]
) -> None:
    # Given a heavy report burning CPU in the pool's child
    victim = _heavy_synthetic(region, rows=11, cpu_ms=2500)
    _enqueue(region, victim)
    worker = start_worker()
    region.wait_for(victim.report_id, lambda r: r.state is State.RUNNING, timeout=30)
    deadline = time.monotonic() + 10
    while not (children := _pool_children(worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children, "no pool child found"

    # When the child is SIGKILLed mid-report (what the kernel's OOM killer does)
    time.sleep(0.5)
    for child in children:
        child.kill()
    killed_at = time.monotonic()
    later = [_heavy_synthetic(region, rows=2 + i) for i in range(3)]
    _enqueue(region, *later)

    # Then the report is retried on a new pool and succeeds; so do the later ones
    done = _done(region, victim.report_id)
    recovered = time.monotonic() - killed_at
    outcomes = [_done(region, t.report_id) for t in later]
    assert worker.stop() == 0
    assert done.state is State.SUCCEEDED, (done.state, done.error_reason)
    assert done.attempts == 2  # the killed run and the retry
    assert done.result is not None
    assert done.result.row_count == 11
    later_failed = sum(r.state is not State.SUCCEEDED for r in outcomes)
    assert later_failed == 0, [(r.state, r.error_reason) for r in outcomes]
    figure(
        "19.2 pool child SIGKILL",
        attempts=done.attempts,
        recovered_s=round(recovered, 2),
        later=len(later),
        later_failed=later_failed,
    )


# --- 19.6 -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_permanent_failure_with_a_huge_message_runs_once(
    region: Region, start_worker: Callable[..., WorkerProcess], figure: Callable[..., None]
) -> None:
    # Given a 16,000-column CSV (its column list alone is ~400 KB, 400 times what a
    # stored error may hold) and a missing group_by. At the template's worker size (8 GiB,
    # two report slots) 20,000 columns still bind and 30,000 end RESOURCE_LIMIT first.
    columns = 16_000
    header = ",".join(f"measurement_column_{i:05d}" for i in range(columns)).encode()
    task = _missing_column_summary(region, header + b"\n", "wide.csv")
    _enqueue(region, task)

    # When the queue worker runs it
    worker = start_worker()
    record = _done(region, task.report_id, timeout=120)
    time.sleep(3)  # past the first redelivery backoff (2 s): no second run starts
    again = region.get(task.report_id)
    assert worker.stop() == 0

    # Then it FAILED once, with its own reason and a bounded message
    assert record.state is State.FAILED
    assert record.error_reason == "MISSING_COLUMN", (record.error_reason, record.error_message)
    assert record.attempts == 1
    assert again == record
    assert len(record.error_message.encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert f"{columns} columns" in record.error_message
    figure(
        "19.6 permanent failure runs",
        runs=record.attempts,
        columns=columns,
        message_bytes=len(record.error_message.encode()),
    )


# --- 19.5 -----------------------------------------------------------------------------------


def test_a_report_past_its_time_limit_fails_once_on_each_path(
    region: Region, figure: Callable[..., None]
) -> None:
    limit = 1.0
    caps = RunCaps(light_seconds=limit, heavy_seconds=limit)

    # Light path: what the stream worker runs (in its own process)
    # (light reports accept at most 10 s of CPU at submit; the run-time limit is lowered)
    light = make_task(region.settings, "synthetic", {"cpu_ms": 10_000, "output_rows": 1})
    started = time.monotonic()
    result = Runner(region.services, caps=caps).run(light)
    light_s = time.monotonic() - started
    assert result.outcome is Outcome.FAILED
    assert result.record is not None
    assert result.record.error_reason == TIME_LIMIT_EXCEEDED
    assert light_s < limit + 2, light_s

    # Heavy path: the queue worker's loop, running the generator in its process pool
    pool = GeneratorPool(1)
    worker = QueueWorker(
        Runner(region.services, execute=pool, caps=caps),
        sqs=region.sqs,
        queue_url=region.settings.heavy_queue_url or "",
        concurrency=1,
        lease_seconds=2,
        wait_seconds=1,
    )
    heavy = _heavy_synthetic(region, rows=1, cpu_ms=60_000)
    after = _heavy_synthetic(region, rows=4)
    _enqueue(region, heavy, after)
    loop = threading.Thread(target=worker.run, kwargs={"stop_grace_seconds": 5})
    loop.start()
    try:
        record = _done(region, heavy.report_id, timeout=30)
        next_one = _done(region, after.report_id, timeout=30)
    finally:
        worker.stop()
        loop.join(15)
        pool.shutdown(wait=True)
    assert record.state is State.FAILED
    assert record.error_reason == TIME_LIMIT_EXCEEDED
    assert f"{limit:g} s" in record.error_message
    assert record.attempts == 1  # not retried
    assert record.ended_ms is not None
    assert record.started_ms is not None
    heavy_s = (record.ended_ms - record.started_ms) / 1000
    assert heavy_s < limit + 3, heavy_s
    assert next_one.state is State.SUCCEEDED
    figure(
        "19.5 run-time limit",
        limit_s=limit,
        light_ended_s=round(light_s, 2),
        heavy_ended_s=round(heavy_s, 2),
        runs=record.attempts,
        asked_cpu_s="10 light / 60 heavy",
    )


# --- 19.7 -----------------------------------------------------------------------------------


def test_an_s3_input_over_the_cap_fails_before_download(
    region: Region, figure: Callable[..., None]
) -> None:
    cap = 4096
    uri = _put_input(region, "big.csv", b"v\n" + b"1\n" * 10_000)
    task = make_task(region.settings, "summary", {"aggregates": [{"op": "count"}]}, s3_uri=uri)
    runner = Runner(_services_reading_inputs(region), caps=RunCaps(max_input_bytes=cap))
    result = runner.run(task)
    assert result.outcome is Outcome.FAILED
    assert result.record is not None
    assert result.record.error_reason == INPUT_TOO_LARGE
    assert str(cap) in result.record.error_message
    assert result.record.attempts == 1
    figure(
        "19.7 input size cap",
        cap_bytes=cap,
        object_bytes=20_002,
        report="FAILED/" + INPUT_TOO_LARGE,
    )


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


@pytest.mark.slow
def test_a_tiny_parquet_of_huge_text_ends_resource_limit_within_a_memory_ceiling(
    region: Region,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    figure: Callable[..., None],
) -> None:
    # Given a few-KB Parquet file that holds 300 MB of text
    text_mb = 300
    parquet = tmp_path / "text.parquet"
    writer = duckdb.connect(config={"memory_limit": "256MB", "threads": 1})
    writer.execute(
        f"COPY (SELECT repeat('x', 1000000) AS t, range AS i FROM range({text_mb})) "
        f"TO '{parquet}' (FORMAT PARQUET, COMPRESSION zstd, ROW_GROUP_SIZE 8)"
    )
    writer.close()
    size = parquet.stat().st_size
    assert size < 64 * 1024
    task = make_task(
        region.settings,
        "summary",
        {"group_by": ["i"], "aggregates": [{"op": "count"}]},
        s3_uri=_put_input(region, "text.parquet", parquet.read_bytes()),
        data_format=pb.DATA_FORMAT_PARQUET,
    )
    after = _heavy_synthetic(region, rows=5)

    # When a queue worker sized at 512 MiB and 256 MiB of scratch disk runs it (with the
    # deployed two report slots: 128 MiB and 32 MiB of spill space for each report)
    worker = start_worker(
        **{resources.ENV.WORKER_MEMORY_MIB: "512", resources.ENV.WORKER_DISK_MIB: "256"}
    )
    idle = _tree_rss(worker.proc.pid)
    _enqueue(region, task, after)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, _tree_rss(worker.proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        record = _done(region, task.report_id, timeout=60)
        next_one = _done(region, after.report_id, timeout=30)
    finally:
        stop.set()
        sampler.join()
    assert worker.stop() == 0

    # Then it FAILED with the reason, the worker stayed under the ceiling, the next one ran
    ceiling_mb = 450  # under the task's 512 MiB: ECS would not have killed it
    assert record.state is State.FAILED
    assert record.error_reason == RESOURCE_LIMIT, record.error_reason
    assert "128 MiB of memory and 32 MiB of spill space" in record.error_message
    assert record.attempts == 1
    assert next_one.state is State.SUCCEEDED
    peak_mb = peak / 1024 / 1024
    assert peak_mb < ceiling_mb, peak_mb
    figure(
        "19.7 memory ceiling",
        parquet_kb=round(size / 1024, 1),
        text_mb=text_mb,
        worker_tree_idle_rss_mb=round(idle / 1024 / 1024),
        worker_tree_peak_rss_mb=round(peak_mb),
        ceiling_mb=ceiling_mb,
        report="FAILED/" + RESOURCE_LIMIT,
        next="SUCCEEDED",
    )
