"""The edge under faults: PutRecords partial failures, Redis frozen or lost, overload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from grpc_edge.clients import Clients
from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources
from reportgrid.local.servers import RedisServer
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings, load_settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import (
    TENANT,
    put_record,
    running_edge,
    stream_tasks,
    synthetic_request,
)


async def states_until_end(call: Any) -> list[int]:
    states = []
    while (message := await call.read()) is not grpc.aio.EOF:
        if message.HasField("report"):  # heartbeats carry no state
            states.append(message.report.state)
    return states


class FlakyKinesis:
    """The real (moto) Kinesis client, except that every third record of each PutRecords is
    rejected as throttled -- and not sent, exactly as a real partial failure."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.seen = 0
        self.injected = 0

    async def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> Any:
        fail = []
        for _ in Records:
            self.seen += 1
            fail.append(self.seen % 3 == 0)
        kept = [r for r, f in zip(Records, fail, strict=True) if not f]
        accepted = iter(
            (await self.real.put_records(StreamName=StreamName, Records=kept))["Records"]
            if kept
            else []
        )
        results = []
        for failed in fail:
            if failed:
                self.injected += 1
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "x"}
                )
            else:
                results.append(next(accepted))
        return {"FailedRecordCount": sum(fail), "Records": results}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_every_acknowledged_submit_is_in_the_stream_despite_partial_failures(
    settings: Settings, api_key: str, aws: RegionResources
) -> None:
    clients = await Clients.open(settings)
    flaky = FlakyKinesis(clients.kinesis)
    clients.kinesis = flaky
    try:
        async with running_edge(settings, api_key, clients=clients) as edge:
            replies = await asyncio.gather(
                *(
                    edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=10)
                    for _ in range(120)
                ),
                return_exceptions=True,
            )
            stats = edge.server.producer.stats
    finally:
        await clients.close()
    acknowledged = [r.report_id for r in replies if isinstance(r, pb.SubmitReportResponse)]
    assert len(acknowledged) == 120, [r for r in replies if isinstance(r, Exception)][:3]
    in_stream = {t.report_id for t in stream_tasks(aws)}
    assert set(acknowledged) <= in_stream
    assert flaky.injected > 0
    assert stats.record_retries >= flaky.injected
    # Batching happened: fewer calls than records.
    assert stats.batches < stats.records_accepted + stats.record_retries


async def test_submit_is_unavailable_with_retry_info_when_kinesis_never_accepts(
    settings: Settings, api_key: str, aws: RegionResources
) -> None:
    class Refusing(FlakyKinesis):
        async def put_records(self, *, StreamName: str, Records: list[Any]) -> Any:
            self.injected += len(Records)
            return {
                "FailedRecordCount": len(Records),
                "Records": [{"ErrorCode": "InternalFailure"} for _ in Records],
            }

    clients = await Clients.open(settings)
    clients.kinesis = Refusing(clients.kinesis)
    try:
        async with running_edge(settings, api_key, clients=clients) as edge:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=1.5)
            elapsed = time.monotonic() - started
    finally:
        await clients.close()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert elapsed < 1.5
    trailers = dict(caught.value.trailing_metadata() or ())
    assert "grpc-status-details-bin" in trailers  # RetryInfo
    assert stream_tasks(aws) == []


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may freeze and kill (the session one is shared)."""
    with RedisServer(None, tmp_path / "redis.log") as server:
        yield server


@pytest.mark.slow
async def test_get_answers_from_dynamodb_when_redis_is_frozen_then_lost(
    region_env: dict[str, str], own_redis: RedisServer, api_key: str, aws: RegionResources
) -> None:
    settings = load_settings({**region_env, resources.ENV.REDIS_URL: own_redis.url})
    codec = settings.id_codec()
    running = codec.new(TENANT, settings.region).value
    finished = [codec.new(TENANT, settings.region).value for _ in range(6)]
    now = time.time_ns() // 1_000_000
    put_record(aws, ReportRecord(running, TENANT, "synthetic", State.RUNNING, now, revision=2))
    for report_id in finished:
        put_record(
            aws,
            ReportRecord(report_id, TENANT, "synthetic", State.FAILED, now, ended_ms=now),
        )
    async with running_edge(settings, api_key) as edge:
        # Warm the key cache while Redis is up.
        await edge.stub.GetReport(pb.GetReportRequest(report_id=running), metadata=edge.auth())
        own_redis.pause()
        try:
            for report_id in [running, *finished[:3]]:
                started = time.monotonic()
                got = await edge.stub.GetReport(
                    pb.GetReportRequest(report_id=report_id), metadata=edge.auth(), timeout=1.0
                )
                assert got.report_id == report_id
                assert time.monotonic() - started < 1.0
            assert edge.server.service.redis.breaker.is_open
        finally:
            own_redis.resume()
        own_redis.kill()
        for report_id in finished[3:]:
            got = await edge.stub.GetReport(
                pb.GetReportRequest(report_id=report_id), metadata=edge.auth(), timeout=1.0
            )
            assert got.state == pb.REPORT_STATE_FAILED
        # Submits still acknowledge without Redis (a key's claim is a DynamoDB item).
        reply = await edge.stub.SubmitReport(
            synthetic_request(idempotency_key="k-1"), metadata=edge.auth(), timeout=3
        )
        assert reply.report_id


async def test_watch_falls_back_to_polling_without_redis(
    region_env: dict[str, str], api_key: str, aws: RegionResources
) -> None:
    env = {k: v for k, v in region_env.items() if k != resources.ENV.REDIS_URL}
    settings = load_settings(env)
    report_id = settings.id_codec().new(TENANT, settings.region).value
    now = time.time_ns() // 1_000_000
    record = ReportRecord(report_id, TENANT, "synthetic", State.RUNNING, now, revision=1)
    put_record(aws, record)
    async with running_edge(settings, api_key) as edge:
        watch = edge.stub.WatchReport(
            pb.WatchReportRequest(report_id=report_id), metadata=edge.auth(), timeout=8
        )
        assert (await watch.read()).report.state == pb.REPORT_STATE_RUNNING
        put_record(aws, record.with_(state=State.SUCCEEDED, ended_ms=now, revision=2))
        rest = await states_until_end(watch)
    assert rest == [pb.REPORT_STATE_SUCCEEDED]


async def test_watch_follows_redis_publications_until_terminal(
    edge: Any, aws: RegionResources, settings: Settings, redis_url: str
) -> None:
    import redis

    from reportgrid import records

    report_id = settings.id_codec().new(TENANT, settings.region).value
    now = time.time_ns() // 1_000_000
    record = ReportRecord(report_id, TENANT, "synthetic", State.PENDING, now, revision=1)
    put_record(aws, record)
    watch = edge.stub.WatchReport(
        pb.WatchReportRequest(report_id=report_id), metadata=edge.auth(), timeout=8
    )
    assert (await watch.read()).report.state == pb.REPORT_STATE_PENDING
    publisher = redis.Redis.from_url(redis_url)
    channel = resources.cache_events_channel(report_id)
    for _ in range(50):  # until the edge has subscribed
        if publisher.pubsub_numsub(channel)[0][1]:
            break
        await asyncio.sleep(0.05)
    running = record.with_(state=State.RUNNING, revision=2, started_ms=now)
    publisher.publish(channel, records.encode_record(running))
    assert (await watch.read()).report.state == pb.REPORT_STATE_RUNNING
    done = running.with_(state=State.CANCELLED, revision=3, ended_ms=now)
    publisher.publish(channel, records.encode_record(done))
    rest = await states_until_end(watch)
    publisher.close()
    assert rest == [pb.REPORT_STATE_CANCELLED]
