"""Edge scenarios against the in-process edge (real sockets, moto server, redis-server):
2 Kinesis partial failures, 5 Redis frozen and killed, 7 overload and one tenant flooding,
9 a client deadline shorter than the work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from functions.notify import Notifier
from functions.runner import Runner, Services
from functions.store import ReportStore
from grpc_edge.clients import Clients
from reportgrid import resources, tasks
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.local.servers import RedisServer
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings, load_settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.faults.conftest import percentile, rpc_details
from tests.integration.edge.conftest import (
    OTHER_TENANT,
    TENANT,
    put_api_key,
    put_record,
    running_edge,
    stream_tasks,
    synthetic_request,
)
from tests.integration.edge.test_faults import FlakyKinesis


async def test_every_acknowledged_submit_is_in_the_stream(
    settings: Settings, api_key: str, aws: RegionResources, figure: Callable[..., None]
) -> None:
    clients = await Clients.open(settings)
    flaky = FlakyKinesis(clients.kinesis)  # every third record rejected as throttled
    clients.kinesis = flaky
    try:
        async with running_edge(settings, api_key, clients=clients) as edge:
            replies = await asyncio.gather(
                *(
                    edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=10)
                    for _ in range(300)
                ),
                return_exceptions=True,
            )
            stats = edge.server.producer.stats
    finally:
        await clients.close()
    acked = {r.report_id for r in replies if isinstance(r, pb.SubmitReportResponse)}
    refused = [r for r in replies if isinstance(r, grpc.aio.AioRpcError)]
    # Every call ended as a reply or a gRPC status: nothing else (a client-side crash) hides.
    assert len(acked) + len(refused) == len(replies), [
        r for r in replies if not isinstance(r, pb.SubmitReportResponse | grpc.aio.AioRpcError)
    ]
    # The promise is about acknowledged submits: with none, "none lost" says nothing.
    assert len(acked) >= len(replies) // 2, f"only {len(acked)} of {len(replies)} acked"
    for err in refused:  # whoever was not accepted in time was told to retry
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "RetryInfo" in rpc_details(err)
    in_stream = {t.report_id for t in stream_tasks(aws)}
    lost = acked - in_stream
    assert lost == set()
    assert flaky.injected > 0
    figure(
        "2 Kinesis partial failures",
        submits=len(replies),
        acked=len(acked),
        unavailable=len(refused),
        injected_failures=flaky.injected,
        acked_but_lost=len(lost),
        retries_per_record=round(stats.record_retries / max(1, stats.records_accepted), 3),
    )


async def test_get_and_watch_answer_from_dynamodb_while_redis_is_frozen_then_killed(
    region_env: dict[str, str],
    own_redis: RedisServer,
    api_key: str,
    aws: RegionResources,
    figure: Callable[..., None],
) -> None:
    settings = load_settings({**region_env, resources.ENV.REDIS_URL: own_redis.url})
    codec = settings.id_codec()
    now = time.time_ns() // 1_000_000
    ids = [codec.new(TENANT, settings.region).value for _ in range(10)]
    for report_id in ids:
        put_record(
            aws, ReportRecord(report_id, TENANT, "synthetic", State.RUNNING, now, revision=1)
        )
    latencies: dict[str, list[float]] = {"frozen": [], "killed": []}
    errors: list[str] = []

    async with running_edge(settings, api_key) as edge:
        breaker = edge.server.service.redis.breaker
        await edge.stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=edge.auth())

        async def probe(phase: str, rounds: int) -> None:
            for n in range(rounds):
                report_id = ids[n % len(ids)]
                started = time.monotonic()
                # The deadline only has to tell a bounded call from a hung one (a frozen
                # Redis without the breaker hangs until it); the latency bound is the p99
                # below. A 1 s deadline lost a call to CPU contention in a full parallel run.
                try:
                    got = await edge.stub.GetReport(
                        pb.GetReportRequest(report_id=report_id), metadata=edge.auth(), timeout=3
                    )
                    watch = edge.stub.WatchReport(
                        pb.WatchReportRequest(report_id=report_id), metadata=edge.auth(), timeout=3
                    )
                    first = (await watch.read()).report
                    watch.cancel()
                    assert got.state == first.state == pb.REPORT_STATE_RUNNING
                except grpc.aio.AioRpcError as error:
                    errors.append(f"{phase}: {error.code().name} {error.details()}")
                latencies[phase].append((time.monotonic() - started) * 1000)

        own_redis.pause()
        try:
            await probe("frozen", 40)
            opened_while_frozen = breaker.is_open
        finally:
            own_redis.resume()
        own_redis.kill()
        await probe("killed", 40)
        # Redis comes back (same port): the breaker's trial call closes it again
        own_redis.start()
        returned = time.monotonic()
        while breaker.is_open and time.monotonic() - returned < 10:
            await probe("killed", 1)
            await asyncio.sleep(0.1)
        closed_after = time.monotonic() - returned
        closed = not breaker.is_open
    assert errors == []
    assert opened_while_frozen
    assert closed
    p99_frozen = percentile(latencies["frozen"], 99)
    p99_killed = percentile(latencies["killed"], 99)
    assert p99_frozen < 1000
    assert p99_killed < 1000
    figure(
        "5 Redis frozen/killed",
        calls=2 * (len(latencies["frozen"]) + len(latencies["killed"])),
        errors=len(errors),
        p99_frozen_ms=round(p99_frozen, 1),
        p99_killed_ms=round(p99_killed, 1),
        breaker_opened=breaker.opened_count,
        breaker_closed_after_s=round(closed_after, 2),
    )


@pytest.mark.slow
async def test_overload_sheds_the_excess_fast_and_admitted_calls_keep_their_latency(
    region_env: dict[str, str], api_key: str, aws: RegionResources, figure: Callable[..., None]
) -> None:
    limit = 8
    settings = load_settings({**region_env, resources.ENV.MAX_CONCURRENT_RPCS: str(limit)})
    report_id = settings.id_codec().new(TENANT, settings.region).value
    now = time.time_ns() // 1_000_000
    # A running report: each Get reads DynamoDB (the moto server, which serializes requests),
    # so calls take time and 2x the limit of closed-loop clients really overflows it.
    put_record(aws, ReportRecord(report_id, TENANT, "synthetic", State.RUNNING, now, revision=1))
    request = pb.GetReportRequest(report_id=report_id)

    async with running_edge(settings, api_key) as edge:

        async def client_loop(seconds: float, ok: list[float], shed: list[float]) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                started = time.monotonic()
                try:
                    await edge.stub.GetReport(request, metadata=edge.auth(), timeout=5)
                    ok.append((time.monotonic() - started) * 1000)
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err  # noqa: PT017
                    shed.append((time.monotonic() - started) * 1000)
                    await asyncio.sleep(0.005)

        base_ok: list[float] = []
        base_shed: list[float] = []
        # Baseline: exactly the limit in flight (the same load on the store as admitted later)
        await asyncio.gather(*(client_loop(2, base_ok, base_shed) for _ in range(limit)))
        over_ok: list[float] = []
        over_shed: list[float] = []
        await asyncio.gather(*(client_loop(3, over_ok, over_shed) for _ in range(2 * limit)))
    assert len(base_shed) <= len(base_ok) // 100  # at the limit: (almost) nothing shed
    assert over_shed, "2x the concurrency limit must shed some calls"
    p99_shed = percentile(over_shed, 99)
    p99_base = percentile(base_ok, 99)
    p99_over = percentile(over_ok, 99)
    # Rejected in milliseconds, never slower than being served (loose absolute bound: the
    # client and the server share two busy cores here)
    assert p99_shed < 100, p99_shed
    assert percentile(over_shed, 50) <= percentile(over_ok, 50) + 5
    # Admitted calls keep their latency: the excess is not queued behind them. (Loose
    # factor: client and server share two cores here.)
    assert p99_over < 4 * p99_base + 25, (p99_base, p99_over, percentile(over_ok, 50))
    figure(
        "7 overload 2x max_concurrent_rpcs",
        limit=limit,
        clients=2 * limit,
        admitted=len(over_ok),
        shed=len(over_shed),
        p99_shed_ms=round(p99_shed, 1),
        p99_admitted_base_ms=round(p99_base, 1),
        p99_admitted_overload_ms=round(p99_over, 1),
        p50_admitted_base_ms=round(percentile(base_ok, 50), 1),
        p50_admitted_overload_ms=round(percentile(over_ok, 50), 1),
    )


async def test_one_tenant_flooding_is_limited_and_another_is_not(
    region_env: dict[str, str], api_key: str, aws: RegionResources, figure: Callable[..., None]
) -> None:
    rate = 50.0
    settings = load_settings({**region_env, resources.ENV.TENANT_RATE_LIMIT: str(rate)})
    other = put_api_key(aws, OTHER_TENANT)
    request = pb.ListReportKindsRequest()
    async with running_edge(settings, api_key) as edge:
        flood = await asyncio.gather(
            *(
                edge.stub.ListReportKinds(request, metadata=edge.auth(), timeout=5)
                for _ in range(400)
            ),
            return_exceptions=True,
        )
        calm: list[Any] = []
        for _ in range(20):  # well under the rate, right after the flood
            calm.append(await edge.stub.ListReportKinds(request, metadata=edge.auth(other)))
            await asyncio.sleep(1 / rate * 2)
    limited = [r for r in flood if isinstance(r, grpc.aio.AioRpcError)]
    assert limited
    for err in limited:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rpc_details(limited[0])
    assert {"RetryInfo", "QuotaFailure"} <= set(details)
    assert details["QuotaFailure"].violations[0].subject == f"tenant:{TENANT}"
    assert details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() > 0
    assert all(isinstance(r, pb.ListReportKindsResponse) for r in calm)
    figure(
        "7 tenant flood",
        rate_per_s=rate,
        flood_calls=len(flood),
        flood_limited=len(limited),
        other_tenant_calls=len(calm),
        other_tenant_limited=0,
    )


class SlowKinesis:
    """The real (moto) Kinesis client, with every PutRecords delayed."""

    def __init__(self, real: Any, delay: float) -> None:
        self.real = real
        self.delay = delay

    async def put_records(self, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await self.real.put_records(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_a_deadline_shorter_than_the_work_is_deadline_exceeded_with_no_orphan_writes(
    settings: Settings,
    api_key: str,
    aws: RegionResources,
    redis_url: str,
    figure: Callable[..., None],
) -> None:
    clients = await Clients.open(settings)
    clients.kinesis = SlowKinesis(clients.kinesis, delay=0.5)
    try:
        async with running_edge(settings, api_key, clients=clients) as edge:
            await edge.stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=edge.auth())
            results = await asyncio.gather(
                *(
                    edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=0.2)
                    for _ in range(20)
                ),
                return_exceptions=True,
            )
            await asyncio.sleep(1.0)  # let any PutRecords in flight land
    finally:
        await clients.close()
    codes = {r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)}
    assert codes == {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert not any(isinstance(r, pb.SubmitReportResponse) for r in results)
    # "No orphan writes": the edge wrote nothing but the task log. A task that landed although
    # its caller gave up is a whole, valid task; run by a worker, it is an ordinary report.
    landed = stream_tasks(aws)
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    assert ddb.scan(TableName=aws.table_name, Select="COUNT")["Count"] == 1  # the API key
    services = Services(
        settings=settings,
        store=ReportStore(ddb, settings.table_name),
        s3=client("s3", aws.region, aws.endpoint_url),
        notifier=Notifier(redis_url),
    )
    runner = Runner(services)
    for task in landed:
        assert tasks.decode(tasks.encode(task)) == task
        result = runner.run(task)
        assert result.record is not None
        assert result.record.state is State.SUCCEEDED
    figure(
        "9 client deadline < work",
        submits=len(results),
        deadline_exceeded=len(results),
        acknowledged=0,
        landed_anyway=len(landed),
        landed_invalid=0,
        other_writes=0,
    )
