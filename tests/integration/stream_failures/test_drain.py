"""The drain of the stream-failure queue: the real handler reads a given-up batch back from
the (moto server) stream and re-drives its unfinished tasks to the heavy queue, where the
real queue worker completes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reportgrid import records, tasks
from reportgrid.states import State
from tests.integration.stream_failures.helpers import (
    FailSends,
    deliver,
    emitted,
    failure_body,
    heavy_bodies,
    put,
    queue_worker,
)
from tests.integration.workers.conftest import Region, make_task


def _redriven_ids(region: Region) -> list[str]:
    return sorted(tasks.decode_text(body).report_id for body in heavy_bodies(region))


def test_unfinished_tasks_of_the_range_are_redriven_and_complete(
    region: Region, drain_handler: Any
) -> None:
    # Given on one shard: a record before the batch, then the given-up batch (a light task
    # with no record, a task already SUCCEEDED, poison bytes, a heavy task left PENDING +
    # forwarded, a duplicate of the first task), then a record after it
    settings = region.settings
    before, after = (make_task(settings, "synthetic", {"output_rows": 1}) for _ in range(2))
    light = make_task(settings, "synthetic", {"output_rows": 2, "seed": 1})
    done = make_task(settings, "synthetic", {"output_rows": 2, "seed": 2})
    heavy = make_task(settings, "synthetic_heavy", {"output_rows": 3})
    region.runner().run(done)
    assert region.services.store.mark_forwarded(heavy, token="kinesis:lost")
    puts = put(
        region,
        [
            tasks.encode(before),
            tasks.encode(light),
            tasks.encode(done),
            b"\x00poison",
            tasks.encode(heavy),
            tasks.encode(light),
            tasks.encode(after),
        ],
    )
    done_revision = region.get(done.report_id).revision  # type: ignore[union-attr]

    # When the drain handles the on-failure record of the batch
    response, _ = deliver(region, [failure_body(region, puts[1:6])])

    # Then exactly the unfinished tasks of the range went to the heavy queue, once each
    assert response == {"batchItemFailures": []}
    assert _redriven_ids(region) == sorted([light.report_id, heavy.report_id])
    assert region.get(done.report_id).revision == done_revision  # type: ignore[union-attr]
    assert region.get(before.report_id) is None
    assert region.get(after.report_id) is None


def test_redriven_tasks_end_succeeded_and_a_redelivery_changes_nothing(
    region: Region, drain_handler: Any
) -> None:
    # Given a given-up batch of two tasks nobody ran
    settings = region.settings
    batch = [make_task(settings, "synthetic", {"output_rows": 2, "seed": i}) for i in range(2)]
    puts = put(region, [tasks.encode(t) for t in batch])
    body = failure_body(region, puts)

    # When the drain re-drives them and the queue worker runs the heavy queue
    first, _ = deliver(region, [body])
    with queue_worker(region):
        ended = [region.wait_for(t.report_id, lambda r: r.terminal, timeout=20) for t in batch]
    revisions = [r.revision for r in ended]

    # Then each report SUCCEEDED in one run
    assert first == {"batchItemFailures": []}
    assert [r.state for r in ended] == [State.SUCCEEDED, State.SUCCEEDED]
    assert [r.attempts for r in ended] == [1, 1]

    # And the same on-failure record delivered again re-drives nothing and writes nothing
    again, _ = deliver(region, [body])
    assert again == {"batchItemFailures": []}
    assert heavy_bodies(region) == []
    assert [region.get(t.report_id).revision for t in batch] == revisions  # type: ignore[union-attr]


def test_records_gone_from_the_stream_are_reported_not_retried(
    region: Region,
    drain_handler: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a given-up batch of three tasks whose records then left the stream (the stream
    # is re-created: its shards hold none of them), and one naming a shard that is gone
    settings = region.settings
    puts = put(region, [tasks.encode(make_task(settings, "synthetic", {})) for _ in range(3)])
    expired = failure_body(region, puts, condition="RecordAgeExceeded")
    gone_shard = json.loads(failure_body(region, puts[:1]))
    gone_shard["KinesisBatchInfo"]["shardId"] = "shardId-000000000099"
    region.kinesis.delete_stream(StreamName=settings.task_stream_name)
    region.kinesis.create_stream(StreamName=settings.task_stream_name, ShardCount=2)
    region.kinesis.get_waiter("stream_exists").wait(StreamName=settings.task_stream_name)
    capsys.readouterr()

    # When the drain handles both on-failure records
    response, _ = deliver(region, [expired, json.dumps(gone_shard)])

    # Then neither fails (no retry can bring the records back), nothing is re-driven, and
    # the loss is logged and counted
    assert response == {"batchItemFailures": []}
    assert heavy_bodies(region) == []
    output = capsys.readouterr().out
    assert emitted(output, "StreamRecordsExpired") == 4
    assert emitted(output, "TasksRedriven") == 0
    lost = [r.__dict__ for r in caplog.records if "no longer in the stream" in r.getMessage()]
    assert [(x["batch_size"], x["expired"], x["condition"]) for x in lost] == [
        (3, 3, "RecordAgeExceeded"),
        (1, 1, "RetryAttemptsExhausted"),
    ]


def test_a_failed_send_fails_only_its_message_and_the_retry_completes_it(
    region: Region, drain_handler: Any
) -> None:
    # Given two on-failure records: one whose only task is already terminal, one whose task
    # must be sent, while the heavy queue refuses every SendMessageBatch
    settings = region.settings
    finished = make_task(settings, "synthetic", {"output_rows": 1})
    region.runner().run(finished)
    waiting = make_task(settings, "synthetic", {"output_rows": 1, "seed": 3})
    nothing_to_send = failure_body(region, put(region, [tasks.encode(finished)], key="a"))
    to_send = failure_body(region, put(region, [tasks.encode(waiting)], key="b"))

    with FailSends(region.sqs) as fault:
        response, ids = deliver(region, [nothing_to_send, to_send])

    # Then only the message whose send failed is retried
    assert fault.injected >= 1
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert heavy_bodies(region) == []
    assert region.get(waiting.report_id) is None

    # And its redelivery, with the queue back, re-drives the task
    again, _ = deliver(region, [to_send])
    assert again == {"batchItemFailures": []}
    assert _redriven_ids(region) == [waiting.report_id]


def test_a_malformed_message_fails_and_is_left_for_the_dlq(
    region: Region, drain_handler: Any
) -> None:
    # Given a message that is not an on-failure destination record, next to a good one
    settings = region.settings
    task = make_task(settings, "synthetic", {})
    good = failure_body(region, put(region, [tasks.encode(task)]))

    response, ids = deliver(region, ['{"KinesisBatchInfo": {"shardId": 1}}', good])

    # Then it alone fails (after the queue's max receives it stops in the DLQ); the good
    # one is re-driven
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[0]}]}
    assert _redriven_ids(region) == [task.report_id]


def test_a_running_report_whose_run_was_lost_is_redriven_and_taken_over(
    region: Region, drain_handler: Any
) -> None:
    # Given a report the stream worker claimed and then lost (RUNNING, lease run out)
    settings = region.settings
    task = make_task(settings, "synthetic", {"output_rows": 2})
    claim = region.services.store.claim(
        task, owner="lambda:dead", region="us-east-1", lease_seconds=0.01
    )
    assert claim.record is not None
    assert claim.record.state is State.RUNNING
    puts = put(region, [tasks.encode(task)])

    # When the drain re-drives it and the queue worker runs it
    response, _ = deliver(region, [failure_body(region, puts)])
    with queue_worker(region):
        ended = region.wait_for(task.report_id, lambda r: r.terminal, timeout=20)

    # Then the queue worker took it over and completed it
    assert response == {"batchItemFailures": []}
    assert ended.state is State.SUCCEEDED
    assert ended.attempts == 2
    assert records.to_proto(ended, now_ms=0).state  # a complete, readable record
