"""Scenario 4: poison records. Undecodable bytes and a kind that no longer exists go through
the deployed stream function (its asset, fed by the Kinesis event source configured from the
template's mapping); parameters that crash the generator go through the same handler
in-process, where a crashing generator can be injected: each report ends FAILED with a
message, and the shard is not blocked (the good record behind them completes). On SQS a
task whose worker dies on every receive goes to the DLQ after HEAVY_MAX_RECEIVES receives,
and the DLQ drain ends its report FAILED."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.queue_worker.worker import RETRIES_EXHAUSTED, QueueWorker
from functions.runner import GENERATOR_FAILED_MESSAGE, Runner
from functions.stream_worker import handler as stream
from reportgrid import records, resources, tasks
from reportgrid.engine.kinds import REGISTRY
from reportgrid.engine.registry import Registry
from reportgrid.local.event_sources import mapping_config
from reportgrid.local.kinesis_runner import ON_FAILURE_FILE, KinesisRunner
from reportgrid.local.launch import LocalDeployment
from reportgrid.records import ReportRecord
from reportgrid.states import State
from tests.faults.conftest import STREAM_WORKER, Functions
from tests.integration.workers.conftest import Region, make_task

CRASH_KIND = "synthetic_crashing"


def _crash(_request: Any) -> Any:
    raise ZeroDivisionError("a generator defect")


def _registry_with_a_crashing_kind() -> Registry:
    """Today's kinds plus one whose generator crashes (a defect reached by some params)."""
    registry = Registry()
    for spec in REGISTRY:
        registry.register(spec)
    registry.register(
        dataclasses.replace(REGISTRY.get("synthetic"), name=CRASH_KIND, generator=_crash)
    )
    return registry


def _put_on_one_shard(region: Region, payloads: list[bytes]) -> None:
    # All on one shard, the good one last: it completes only if nothing blocks the shard.
    for data in payloads:
        region.kinesis.put_record(
            StreamName=region.settings.task_stream_name, Data=data, PartitionKey="one-shard"
        )


def test_poison_records_fail_their_report_and_never_block_the_shard(
    region: Region, functions: Functions, figure: Callable[..., None]
) -> None:
    # Given undecodable records and a task of a retired kind, a good task behind them
    gone_kind = make_task(region.settings, "synthetic", {"output_rows": 1})
    gone_kind.request.kind = "retired_kind"
    good = make_task(region.settings, "synthetic", {"output_rows": 3, "seed": 7})
    undecodable = [b"\x00not a task", b"R\x01\xff\xff"]
    _put_on_one_shard(region, [*undecodable, tasks.encode(gone_kind), tasks.encode(good)])
    started = time.monotonic()

    # When the deployed stream function is fed them by its event source
    runner = functions.kinesis(functions.host(STREAM_WORKER))
    done = region.wait_for(good.report_id, lambda r: r.terminal, timeout=30)
    behind_poison_s = time.monotonic() - started

    # Then the good report behind the poison completed; the retired kind FAILED with a
    # message; nothing was given up on
    assert done.state is State.SUCCEEDED
    retired = region.get(gone_kind.report_id)
    assert retired is not None
    assert retired.state is State.FAILED
    assert retired.error_reason == "INVALID_PARAMS"
    assert "retired_kind" in retired.error_message
    assert not (runner._state_dir / ON_FAILURE_FILE).exists()  # type: ignore[operator]
    figure(
        "4 poison records (Lambda)",
        poison=len(undecodable) + 1,
        failed_with_message=1,
        undecodable_skipped=len(undecodable),
        shard_blocked=0,
        good_done_s=round(behind_poison_s, 2),
        invocations=runner.invocations,
    )


@pytest.fixture
def in_process_runner(
    region: Region, deployment: LocalDeployment, tmp_path: Path
) -> Iterator[Callable[[], KinesisRunner]]:
    """The stream handler in this process (clients on the moto server, dependencies
    injectable), fed by the local event source with the template's mapping."""
    started: list[tuple[KinesisRunner, list[threading.Thread]]] = []
    function = deployment.function(STREAM_WORKER)

    def start() -> KinesisRunner:
        runner = KinesisRunner(
            stream.handler,
            stream_name=region.settings.task_stream_name,
            region=region.aws.region,
            endpoint_url=region.aws.endpoint_url,
            state_dir=tmp_path / "runner",
            config=mapping_config(deployment.mapping(function), function),
        )
        started.append((runner, runner.start()))
        return runner

    yield start
    for runner, threads in started:
        runner.stop()
        for thread in threads:
            thread.join(10)
    stream.configure(None)


def test_a_crashing_generator_fails_its_report_without_the_defect_and_never_blocks_the_shard(
    region: Region, in_process_runner: Callable[[], KinesisRunner], figure: Callable[..., None]
) -> None:
    # Given the handler with a registry where one kind's generator crashes (in-process: the
    # deployed asset has no such kind, and a defect cannot be injected into it)
    services = dataclasses.replace(region.services, registry=_registry_with_a_crashing_kind())
    stream.configure(
        stream.Dependencies(
            runner=Runner(services, owner_prefix="lambda-faults"),
            sqs=region.sqs,
            heavy_queue_url=region.settings.heavy_queue_url,
        )
    )
    crashing = make_task(region.settings, CRASH_KIND, {"output_rows": 1})
    good = make_task(region.settings, "synthetic", {"output_rows": 3, "seed": 7})
    _put_on_one_shard(region, [tasks.encode(crashing), tasks.encode(good)])
    started = time.monotonic()

    # When the local event source feeds them to the handler
    runner = in_process_runner()
    done = region.wait_for(good.report_id, lambda r: r.terminal, timeout=30)
    behind_poison_s = time.monotonic() - started

    # Then the crashed report FAILED with the generic message, and the good one completed
    assert done.state is State.SUCCEEDED
    crashed = region.get(crashing.report_id)
    assert crashed is not None
    assert crashed.state is State.FAILED
    assert crashed.error_reason == "GENERATOR_FAILED"
    assert crashed.error_message == GENERATOR_FAILED_MESSAGE
    assert "ZeroDivisionError" not in crashed.error_message  # no defect text to users
    assert not (runner._state_dir / ON_FAILURE_FILE).exists()  # type: ignore[operator]
    figure(
        "4 poison record, crashing generator (handler in-process)",
        poison=1,
        failed_with_message=1,
        shard_blocked=0,
        good_done_s=round(behind_poison_s, 2),
        invocations=runner.invocations,
    )


def _receive(region: Region, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = region.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, **kwargs
    ).get("Messages", [])
    return messages


def test_a_task_whose_worker_dies_every_time_goes_to_the_dlq_and_ends_failed(
    region: Region, figure: Callable[..., None]
) -> None:
    # Given a heavy task whose worker is lost on every one of its allowed receives: the
    # report is RUNNING under a lease that then runs out, the message is never deleted
    settings = region.settings
    queue_url = settings.heavy_queue_url
    assert queue_url is not None
    task = make_task(settings, "synthetic_heavy", {"output_rows": 5})
    region.sqs.send_message(QueueUrl=queue_url, MessageBody=tasks.encode_text(task))
    receives = 0
    for _ in range(resources.HEAVY_MAX_RECEIVES):
        got = _receive(region, queue_url, VisibilityTimeout=0)
        assert len(got) == 1
        receives += 1
    now = time.time_ns() // 1_000_000
    region.services.store._ddb.put_item(  # what the dead worker left: RUNNING, lease over
        TableName=settings.table_name,
        Item=records.to_item(
            ReportRecord(
                task.report_id,
                task.tenant,
                "synthetic_heavy",
                State.RUNNING,
                now - 10_000,
                started_ms=now - 9_000,
                attempts=receives,
                lease_owner="fargate:dead",
                lease_until_ms=now - 1_000,
                revision=receives,
            )
        ),
    )
    # SQS moves it to the DLQ on the receive after the last allowed one
    assert _receive(region, queue_url, VisibilityTimeout=0) == []
    dlq_url = region.aws.heavy_dlq_url
    attrs = region.sqs.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "1"

    # When a queue worker starts (it finds the DLQ from the RedrivePolicy and drains it)
    worker = QueueWorker(
        Runner(region.services),
        sqs=region.sqs,
        queue_url=queue_url,
        concurrency=1,
        lease_seconds=2,
        wait_seconds=1,
        dlq_interval_seconds=0.5,
    )
    started = time.monotonic()
    loop = threading.Thread(target=worker.run, kwargs={"stop_grace_seconds": 5})
    loop.start()
    try:
        record = region.wait_for(task.report_id, lambda r: r.terminal, timeout=10)
        ended_after = time.monotonic() - started
        time.sleep(1.2)  # more drains: the report is not touched again
        again = region.get(task.report_id)
    finally:
        worker.stop()
        loop.join(10)

    # Then the report is FAILED with RETRIES_EXHAUSTED, once; the message stays for operators
    assert record.state is State.FAILED
    assert record.error_reason == RETRIES_EXHAUSTED
    assert str(resources.HEAVY_MAX_RECEIVES) in record.error_message
    assert again == record
    assert worker.drain_dlq() == 0  # idempotent: nothing more to end
    policy = json.loads(
        region.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    figure(
        "4 poison task (SQS DLQ)",
        receives=receives,
        max_receive_count=int(policy["maxReceiveCount"]),
        in_dlq=1,
        report="FAILED/" + record.error_reason,
        ended_after_s=round(ended_after, 2),
    )


def test_the_dlq_drain_waits_for_a_live_lease(region: Region) -> None:
    # A task in the DLQ whose report another worker still holds under a live lease is not
    # failed under that worker; the drain looks again later.
    settings = region.settings
    task = make_task(settings, "synthetic_heavy", {"output_rows": 5})
    held = region.services.store.claim(
        task, owner="fargate:alive", region=settings.region, lease_seconds=30
    )
    assert held.record is not None
    region.sqs.send_message(QueueUrl=region.aws.heavy_dlq_url, MessageBody=tasks.encode_text(task))
    worker = QueueWorker(
        Runner(region.services),
        sqs=region.sqs,
        queue_url=settings.heavy_queue_url or "",
        concurrency=1,
        lease_seconds=2,
    )
    assert worker.drain_dlq() == 0
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.RUNNING
    assert record.lease_owner == "fargate:alive"
