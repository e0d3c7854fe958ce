"""Idempotency keys end to end: the real edge over a real socket against the moto server,
each key's claim item in the report table (grpc_edge/idempotency.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_edge import idempotency, reads
from grpc_edge.clients import Clients
from reportgrid import errors, resources
from reportgrid.client import AsyncReportClient
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings, load_settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.conftest import TEST_ID_SECRET
from tests.integration.edge.conftest import (
    TENANT,
    Edge,
    put_record,
    running_edge,
    stream_tasks,
    synthetic_request,
)

ROTATED_SECRET = "rotated-id-secret-abcdef0123456789"


def _claim(aws: RegionResources, key: str) -> dict[str, Any] | None:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    pk = idempotency.claim_key(TENANT, key)
    found: dict[str, Any] | None = ddb.get_item(
        TableName=aws.table_name, Key={k: {"S": v} for k, v in pk.items()}, ConsistentRead=True
    ).get("Item")
    return found


def _tasks_of(aws: RegionResources, report_id: str) -> int:
    return [t.report_id for t in stream_tasks(aws)].count(report_id)


async def _submit(edge: Edge, request: pb.SubmitReportRequest) -> pb.SubmitReportResponse:
    reply: pb.SubmitReportResponse = await edge.stub.SubmitReport(
        request, metadata=edge.auth(), timeout=5
    )
    return reply


def _summary(data: bytes, key: str) -> pb.SubmitReportRequest:
    request = pb.SubmitReportRequest(
        kind="summary",
        idempotency_key=key,
        input=pb.ReportInput(format=pb.DATA_FORMAT_CSV, inline_data=data),
    )
    request.params.update({"group_by": ["region"], "aggregates": [{"op": "count"}]})
    return request


def _precondition(err: grpc.aio.AioRpcError) -> error_details_pb2.PreconditionFailure:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    found = error_details_pb2.PreconditionFailure()
    (detail,) = [d for d in status.details if d.Is(found.DESCRIPTOR)]
    detail.Unpack(found)
    return found


def _changed(change: str) -> Callable[[str], pb.SubmitReportRequest]:
    def build(key: str) -> pb.SubmitReportRequest:
        if change == "input":
            return _summary(b"region,amount\neu,5\n", key)
        request = synthetic_request(idempotency_key=key)
        if change == "kind":
            request.kind = "synthetic_heavy"
        elif change == "params":
            request.params.update({"output_rows": 11})
        elif change == "format":
            request.output_format = pb.OUTPUT_FORMAT_JSON
        return request

    return build


async def test_a_key_reused_with_another_request_is_refused_and_nothing_enqueued(
    edge: Edge, aws: RegionResources
) -> None:
    for change in ("kind", "params", "input", "format"):
        key = f"reused-{change}"
        # Given a report made with the key
        first_request = (
            _summary(b"region,amount\neu,10\n", key)
            if change == "input"
            else synthetic_request(idempotency_key=key)
        )
        first = await _submit(edge, first_request)
        # When the key comes again with a request that differs in one thing
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _submit(edge, _changed(change)(key))
        # Then FAILED_PRECONDITION naming the key and the report it stands for, and the
        # report's one task is all the log holds of it
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, change
        (violation,) = _precondition(caught.value).violations
        assert (violation.type, violation.subject) == ("IDEMPOTENCY_KEY_REUSED", "idempotency_key")
        assert repr(key) in violation.description
        assert first.report_id in violation.description
        assert _tasks_of(aws, first.report_id) == 1
    assert len(stream_tasks(aws)) == 4


async def test_a_keyed_report_gone_past_retention_reads_not_found(
    edge: Edge, aws: RegionResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a keyed report, queued: PENDING
    reply = await _submit(edge, synthetic_request(idempotency_key="gone-1"))
    get = pb.GetReportRequest(report_id=reply.report_id)
    got = await edge.stub.GetReport(get, metadata=edge.auth(), timeout=5)
    assert got.state == pb.REPORT_STATE_PENDING
    assert got.HasField("create_time")  # a keyed id carries its time too
    # When its claim is gone and the task log's retention has passed since it was accepted
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    pk = idempotency.claim_key(TENANT, "gone-1")
    ddb.delete_item(TableName=aws.table_name, Key={k: {"S": v} for k, v in pk.items()})
    later = time.time_ns() // 1_000_000 + (resources.TASK_RETENTION_HOURS + 1) * 3600 * 1000
    monkeypatch.setattr(reads, "now_ms", lambda: later)
    # Then it is NOT_FOUND, not PENDING forever
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.GetReport(get, metadata=edge.auth(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_same_request_gets_the_same_id_deduplicated_without_redis(
    region_env: dict[str, str], api_key: str, aws: RegionResources
) -> None:
    env = {k: v for k, v in region_env.items() if k != resources.ENV.REDIS_URL}
    async with running_edge(load_settings(env), api_key) as edge:
        first = await _submit(edge, synthetic_request(idempotency_key="no-redis"))
        again = await _submit(edge, synthetic_request(idempotency_key="no-redis"))
        other = await _submit(edge, synthetic_request(idempotency_key="no-redis-2"))
    assert again.report_id == first.report_id != other.report_id
    assert (first.deduplicated, again.deduplicated, other.deduplicated) == (False, True, False)
    assert _tasks_of(aws, first.report_id) == 2  # enqueued again: one id, one report


async def test_a_rotation_keeps_keyed_ids_and_page_tokens(
    settings: Settings, region_env: dict[str, str], api_key: str, aws: RegionResources
) -> None:
    now = time.time_ns() // 1_000_000
    for i in range(3):
        report_id = settings.id_codec().new(TENANT, settings.region, now_ms=now - i).value
        put_record(aws, ReportRecord(report_id, TENANT, "synthetic", State.RUNNING, now - i))
    # Given a keyed report and a page token, both from before the rotation
    async with running_edge(settings, api_key) as before:
        first = await _submit(before, synthetic_request(idempotency_key="across-rotation"))
        page = await before.stub.ListReports(
            pb.ListReportsRequest(page_size=1), metadata=before.auth(), timeout=5
        )
    assert page.next_page_token
    # When a new secret signs (the old one still verifies)
    rotated = load_settings(
        {**region_env, resources.ENV.ID_SECRETS: f"{ROTATED_SECRET},{TEST_ID_SECRET}"}
    )
    async with running_edge(rotated, api_key) as after:
        again = await _submit(after, synthetic_request(idempotency_key="across-rotation"))
        rest = await after.stub.ListReports(
            pb.ListReportsRequest(page_size=5, page_token=page.next_page_token),
            metadata=after.auth(),
            timeout=5,
        )
        fresh = await _submit(after, synthetic_request(idempotency_key="after-rotation"))
    # Then the retry names the same report, and the token still reads the next page
    assert (again.report_id, again.deduplicated) == (first.report_id, True)
    assert len(rest.reports) == 2  # the 3 seeded reports, one per page before
    assert page.reports[0].report_id not in {r.report_id for r in rest.reports}
    assert fresh.report_id != first.report_id


class _LostAnswerKinesis:
    """The Kinesis client with PutRecords answers lost while `failing`: each call's records
    are written, then the call fails as a reset connection would (health calls pass)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failing = True

    async def put_records(self, **kwargs: Any) -> Any:
        answer = await self.inner.put_records(**kwargs)
        if self.failing:
            raise ConnectionResetError("injected: the answer was lost")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _ids_of_key(aws: RegionResources, key: str) -> set[str]:
    return {t.report_id for t in stream_tasks(aws) if t.request.idempotency_key == key}


async def test_a_claim_whose_enqueue_failed_is_kept_and_its_retry_is_one_report(
    settings: Settings, api_key: str, aws: RegionResources
) -> None:
    clients = await Clients.open(settings)
    kinesis = _LostAnswerKinesis(clients.kinesis)
    clients.kinesis = kinesis  # type: ignore[assignment]
    try:
        async with running_edge(settings, api_key, clients=clients) as edge:
            # Given a keyed submit answered UNAVAILABLE although its task was written
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await edge.stub.SubmitReport(
                    synthetic_request(idempotency_key="lost-1"), metadata=edge.auth(), timeout=1.5
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            # Then its claim is kept, naming the report whose task the log holds
            claim = _claim(aws, "lost-1")
            assert claim is not None
            assert _ids_of_key(aws, "lost-1") == {claim["report_id"]["S"]}
            # and the client's retry gets that same id: every task of the key is one report
            kinesis.failing = False
            again = await _submit(edge, synthetic_request(idempotency_key="lost-1"))
            assert (again.report_id, again.deduplicated) == (claim["report_id"]["S"], True)
            assert _ids_of_key(aws, "lost-1") == {again.report_id}
            # and another request under the key is refused
            changed = synthetic_request(
                idempotency_key="lost-1", output_format=pb.OUTPUT_FORMAT_JSON
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _submit(edge, changed)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await clients.close()


async def test_a_claim_made_too_late_to_enqueue_is_released(
    region_env: dict[str, str], api_key: str, aws: RegionResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a call budget the claim uses up entirely (the client sets no deadline)
    budget = 0.5
    env = {**region_env, resources.ENV.CALL_BUDGET_SECONDS: str(budget)}
    real_claim = idempotency.ClaimStore.claim

    async def slow_claim(self: idempotency.ClaimStore, *args: Any, **kwargs: Any) -> Any:
        claimed = await real_claim(self, *args, **kwargs)
        await asyncio.sleep(budget + 0.1)
        return claimed

    monkeypatch.setattr(idempotency.ClaimStore, "claim", slow_claim)
    async with running_edge(load_settings(env), api_key) as edge:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.SubmitReport(
                synthetic_request(idempotency_key="late-1"), metadata=edge.auth()
            )
    # Then UNAVAILABLE, nothing was sent, and the key is free again
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _claim(aws, "late-1") is None
    assert _ids_of_key(aws, "late-1") == set()


async def test_an_expired_claim_still_there_lets_the_key_make_a_new_report(
    edge: Edge, aws: RegionResources
) -> None:
    first = await _submit(edge, synthetic_request(idempotency_key="old-key"))
    # Given the claim past its expiry, not yet swept by TTL
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    pk = idempotency.claim_key(TENANT, "old-key")
    ddb.update_item(
        TableName=aws.table_name,
        Key={k: {"S": v} for k, v in pk.items()},
        UpdateExpression="SET #exp = :past",
        ExpressionAttributeNames={"#exp": resources.TTL_ATTRIBUTE},
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 10)}},
    )
    # When the key comes again, even with another request
    again = await _submit(
        edge, synthetic_request(idempotency_key="old-key", output_format=pb.OUTPUT_FORMAT_JSON)
    )
    # Then it is a new report, and the claim now names it
    assert again.report_id != first.report_id
    assert not again.deduplicated
    claim = _claim(aws, "old-key")
    assert claim is not None
    assert claim["report_id"]["S"] == again.report_id


async def test_the_sdk_raises_idempotency_key_reused_naming_the_key(edge: Edge) -> None:
    async with AsyncReportClient(edge.target, api_key=edge.key) as sdk:
        first = await sdk.submit("synthetic", {"output_rows": 10}, idempotency_key="sdk-1")
        with pytest.raises(errors.IdempotencyKeyReused) as caught:
            await sdk.submit("synthetic", {"output_rows": 11}, idempotency_key="sdk-1")
    assert caught.value.key == "sdk-1"
    assert "'sdk-1'" in caught.value.message
    assert first.report_id in caught.value.message
