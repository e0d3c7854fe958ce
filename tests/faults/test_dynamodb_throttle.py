"""Scenario 6: DynamoDB throttling for k attempts, injected into the real clients with a
botocore `before-send` hook. A few throttled attempts are absorbed by bounded backoff; more
than the retry budget gives UNAVAILABLE with RetryInfo on the edge, and a retried record
(partial batch failure) in the Lambda; no partial state is left behind either way."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from functions.runner import Runner
from functions.store import WRITE_ATTEMPTS
from functions.stream_worker import handler as stream
from reportgrid import intents, tasks
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.faults.conftest import rpc_details, stored_record
from tests.faults.throttle import Throttle
from tests.integration.edge.conftest import TENANT, put_record, running_edge
from tests.integration.workers.conftest import Region, make_task
from tests.integration.workers.test_stream_handler import LambdaContext, _event


def attempts_per_call(client: object) -> int:
    """botocore's `max_attempts` counts retries; the total is one more."""
    return int(client.meta.config.retries["total_max_attempts"])  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_edge_absorbs_brief_throttling_then_answers_unavailable_with_retry_info(
    settings: Settings, api_key: str, aws: RegionResources, figure: Callable[..., None]
) -> None:
    report_id = settings.id_codec().new(TENANT, settings.region).value
    now = time.time_ns() // 1_000_000
    record = ReportRecord(report_id, TENANT, "synthetic", State.RUNNING, now, revision=3)
    put_record(aws, record)
    async with running_edge(settings, api_key) as edge:
        ddb = edge.server.clients.dynamodb
        edge_attempts = attempts_per_call(ddb)
        await edge.stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=edge.auth())
        # k = 2 < attempts: backoff absorbs it
        # (the edge reads a report with its intents in one BatchGetItem)
        with Throttle(ddb, {"BatchGetItem"}, edge_attempts - 1) as brief:
            started = time.monotonic()
            got = await edge.stub.GetReport(
                pb.GetReportRequest(report_id=report_id), metadata=edge.auth(), timeout=10
            )
            absorbed_s = time.monotonic() - started
        assert got.state == pb.REPORT_STATE_RUNNING
        assert brief.injected == edge_attempts - 1
        assert brief.passed >= 1

        # k = 100: every attempt of the budget throttled -> UNAVAILABLE + RetryInfo, bounded
        with Throttle(ddb, {"BatchGetItem", "PutItem"}, 100) as long:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as read:
                await edge.stub.GetReport(
                    pb.GetReportRequest(report_id=report_id), metadata=edge.auth(), timeout=10
                )
            gave_up_s = time.monotonic() - started
            with pytest.raises(grpc.aio.AioRpcError) as cancel:
                await edge.stub.CancelReport(
                    pb.CancelReportRequest(report_id=report_id), metadata=edge.auth(), timeout=10
                )
        read_attempts = edge_attempts  # the GetReport's share of `long.injected`
    for caught in (read, cancel):
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
        assert "RetryInfo" in rpc_details(caught.value)
        assert "Exception" not in (caught.value.details() or "")
    assert long.injected >= 2 * edge_attempts
    assert gave_up_s < 9.0  # standard-mode backoff (at most 1 + 2 + 4 s), attempts bounded
    # No partial state: the report is exactly as it was, and no cancel request was stored
    assert stored_record(aws, report_id) == record
    assert "Item" not in client("dynamodb", aws.region, aws.endpoint_url).get_item(
        TableName=aws.table_name, Key=intents.report_keys(report_id)[1], ConsistentRead=True
    )
    figure(
        "6 DynamoDB throttling (edge)",
        k_absorbed=edge_attempts - 1,
        absorbed_s=round(absorbed_s, 2),
        attempts_then_unavailable=read_attempts,
        unavailable_after_s=round(gave_up_s, 2),
        retry_info=True,
        partial_writes=0,
    )


@pytest.mark.slow
def test_workers_retry_a_throttled_record_and_leave_no_partial_state(
    region: Region, figure: Callable[..., None]
) -> None:
    ddb = region.services.store._ddb
    worker_attempts = attempts_per_call(ddb)
    runner = Runner(region.services, owner_prefix="lambda-throttle")
    stream.configure(stream.Dependencies(runner, region.sqs, region.settings.heavy_queue_url))
    try:
        # k within the budget: the run completes
        brief_task = make_task(region.settings, "synthetic", {"output_rows": 2, "seed": 1})
        with Throttle(ddb, {"PutItem"}, worker_attempts - 1) as brief:
            started = time.monotonic()
            assert runner.run(brief_task).record.state is State.SUCCEEDED  # type: ignore[union-attr]
            absorbed_s = time.monotonic() - started
        assert brief.injected == worker_attempts - 1

        budget = worker_attempts * WRITE_ATTEMPTS
        # k beyond the budget on the terminal write: the record is retried, the lease given
        # back, and nothing terminal or half-written is left
        mid = make_task(region.settings, "synthetic", {"output_rows": 2, "seed": 3})
        mid_event, mid_seqs = _event(region, [tasks.encode(mid)])
        terminal = Throttle(ddb, {"PutItem"}, budget, only_if=lambda body: b"SUCCEEDED" in body)
        with terminal:
            started = time.monotonic()
            response = stream.handler(mid_event, LambdaContext())
            gave_up_s = time.monotonic() - started
        assert terminal.injected == budget
        assert response == {"batchItemFailures": [{"itemIdentifier": mid_seqs[0]}]}
        left = region.get(mid.report_id)
        assert left is not None
        assert left.state is State.RUNNING
        assert left.result is None
        assert not left.lease_until_ms  # released: the redelivery need not wait a lease

        # When the throttling is over, Lambda's redelivery completes it, once
        started = time.monotonic()
        assert stream.handler(mid_event, LambdaContext()) == {"batchItemFailures": []}
        redelivery_s = time.monotonic() - started
    finally:
        stream.configure(None)
    mid_done = region.get(mid.report_id)
    assert mid_done is not None
    assert mid_done.state is State.SUCCEEDED
    assert mid_done.attempts == 2
    assert mid_done.revision == left.revision + 2
    figure(
        "6 DynamoDB throttling (workers)",
        k_absorbed=worker_attempts - 1,
        absorbed_s=round(absorbed_s, 2),
        attempts_then_retry=budget,
        retry_after_s=round(gave_up_s, 2),
        half_written=0,
        redelivery_done_s=round(redelivery_s, 2),
    )
