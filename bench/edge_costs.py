"""What a Submit costs the edge beyond the null server, piece by piece, in microseconds of
CPU: each piece of the hot path run alone in a loop, in this process, with the edge's own
code. The load rows (bench.edge) give the totals; this says where the difference goes.

    python -m bench.edge_costs [--calls N]

Pieces the null server also pays (grpc's transport, parsing the request in grpc's
deserializer, serializing the reply) are not listed. The producer's per-batch figures are
divided by the batch size given (`--batch`, the edge's typical batch at saturation, read
from its BatchSize metric in a bench run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioboto3
import aiobotocore.session
from aiobotocore.config import AioConfig

from bench import payloads
from bench.fake_kinesis import FakeKinesisProcess
from grpc_edge.batcher import Entry
from grpc_edge.idempotency import fingerprint
from grpc_edge.kinesis_writer import KinesisWriter
from grpc_edge.metrics import EdgeMetrics
from grpc_edge.producer import KinesisProducer
from reportgrid import tasks, tracing
from reportgrid.engine.kinds import REGISTRY
from reportgrid.local.servers import RedisServer, free_port
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy, validate_submit_on_loop

Row = tuple[str, float, str]


def _per_call(fn: Callable[[], object], calls: int) -> float:
    for _ in range(min(calls, 500)):
        fn()
    started = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - started) / calls * 1e6


async def _per_call_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    for _ in range(min(calls, 200)):
        await fn()
    started = time.process_time()
    for _ in range(calls):
        await fn()
    return (time.process_time() - started) / calls * 1e6


def handler_rows(calls: int) -> list[Row]:
    codec = payloads.codec()
    request = payloads.submit_request()
    metrics = EdgeMetrics().method("SubmitReport")
    large = payloads.submit_request()
    large.input.inline_data = b"a,b,c\n" * 10_000  # 60 KB of inline CSV
    large.input.format = pb.DATA_FORMAT_CSV
    keyed = payloads.submit_request()
    keyed.idempotency_key = "k-1"

    def old_task(request: pb.SubmitReportRequest = request) -> bytes:
        task = TaskRecord(report_id="rpt_x", tenant="t", home_region="us-east-1", request=request)
        task.accept_time.FromMilliseconds(1_764_650_000_123)
        return tasks.encode(task)

    return [
        (
            "id minting, unkeyed",
            _per_call(lambda: codec.new("bench-tenant", "us-east-1"), calls),
            "",
        ),
        (
            "keyed: request fingerprint (idempotency claim)",
            _per_call(lambda: fingerprint(keyed), calls),
            "",
        ),
        ("task bytes: TaskRecord copy + serialize", _per_call(old_task, calls), ""),
        (
            "task bytes, 60 KB inline input: copy + serialize",
            _per_call(lambda: old_task(large), calls),
            "",
        ),
        (
            "(serializing the 60 KB request: the most task bytes written from the "
            "request's wire bytes could save)",
            _per_call(large.SerializeToString, calls),
            "",
        ),
        ("metrics: one call recorded", _per_call(lambda: metrics.record("OK", 0.004), calls), ""),
        *trace_rows(calls, request),
    ]


def trace_rows(calls: int, request: pb.SubmitReportRequest) -> list[Row]:
    """Trace propagation on Submit (reportgrid/tracing.py): the context from the call's
    metadata (minted when the caller sent none), its header in the task, and the ratio of
    the task's bytes with it to the same run's task bytes without."""
    bare = (("authorization", "Bearer rg_x"), ("user-agent", "grpc-python/1.76"))
    traced = (*bare, ("x-amzn-trace-id", _XRAY))

    def task_bytes(header: str) -> bytes:
        task = TaskRecord(
            report_id="rpt_x",
            tenant="t",
            home_region="us-east-1",
            request=request,
            trace_header=header,
        )
        task.accept_time.FromMilliseconds(1_764_650_000_123)
        return tasks.encode(task)

    baseline = _per_call(lambda: task_bytes(""), calls)
    with_trace = _per_call(lambda: task_bytes(tracing.task_header(bare)), calls)
    return [
        (
            "trace: context minted (no caller header) + header",
            _per_call(lambda: tracing.task_header(bare), calls),
            "",
        ),
        (
            "trace: caller's x-amzn-trace-id parsed + header",
            _per_call(lambda: tracing.task_header(traced), calls),
            "",
        ),
        ("task bytes without trace context (this run's baseline)", baseline, ""),
        (
            "task bytes with a minted trace context",
            with_trace,
            f"{with_trace / baseline:.2f}x the baseline",
        ),
    ]


_XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


async def validation_row(calls: int) -> Row:
    request = payloads.submit_request()
    inputs = InputPolicy.of(())

    async def validate() -> object:
        return await validate_submit_on_loop(request, REGISTRY, tenant="t", inputs=inputs)

    return ("validation (synthetic kind)", await _per_call_async(validate, calls), "")


class _Instant(KinesisProducer):
    """The producer's engine with a call that succeeds at once: its own per-record cost."""

    async def _call(self, batch: list[Entry]) -> set[int]:
        await asyncio.sleep(0)
        return set()


async def producer_row(calls: int, batch: int) -> Row:
    producer = _Instant(None, "s", linger_seconds=0.002, max_in_flight=2)  # type: ignore[arg-type]
    data = b"R\x01" + b"x" * 150
    deadline = time.monotonic() + 3600

    async def wave() -> None:
        await asyncio.gather(*(producer.put(data, "rpt_k", deadline) for _ in range(batch)))

    waves = max(1, calls // batch)
    await wave()
    started = time.process_time()
    for _ in range(waves):
        await wave()
    spent = (time.process_time() - started) / (waves * batch) * 1e6
    # gather's own task per put is the load generator's, not the edge's: subtract it.
    started = time.process_time()
    for _ in range(waves):
        await asyncio.gather(*(asyncio.sleep(0) for _ in range(batch)))
    spent -= (time.process_time() - started) / (waves * batch) * 1e6
    return ("producer: future, batching, one flush per batch, per record", spent, f"batch {batch}")


async def put_records_rows(calls: int, batch: int, work: Path) -> list[Row]:
    moto_less = FakeKinesisProcess(
        "http://127.0.0.1:1", work / "fk.log", close=False, port=free_port()
    )
    closing = FakeKinesisProcess(
        "http://127.0.0.1:1", work / "fkc.log", close=True, port=free_port()
    )
    rows: list[Row] = []
    records: list[dict[str, Any]] = [
        {"Data": b"R\x01" + b"x" * 150, "PartitionKey": "rpt_" + "a" * 52}
    ] * batch
    boto_records: Any = records  # the same records; the stubs want their TypedDict
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with_fakes = [moto_less.start(), closing.start()]
    try:
        credentials = await aiobotocore.session.get_session().get_credentials()
        assert credentials is not None
        config = AioConfig(retries={"max_attempts": 1}, parameter_validation=False)
        async with aioboto3.Session().client(
            "kinesis", region_name="us-east-1", endpoint_url=moto_less.endpoint_url, config=config
        ) as botocore_client:

            async def boto() -> object:
                return await botocore_client.put_records(StreamName="s", Records=boto_records)

            us = await _per_call_async(boto, max(50, calls // 100))
            rows.append(("PutRecords via aiobotocore (before), per call", us, f"{batch} records"))
        for label, fake in (("kept alive", moto_less), ("Connection: close, as moto", closing)):
            writer = KinesisWriter(fake.endpoint_url, "us-east-1", credentials)

            async def lean(writer: KinesisWriter = writer) -> object:
                return await writer.put_records(StreamName="s", Records=records)

            us = await _per_call_async(lean, max(200, calls // 20))
            rows.append(
                (f"PutRecords via the lean writer, {label}, per call", us, f"{batch} records")
            )
            await writer.close()
    finally:
        for fake in with_fakes:
            fake.stop()
    return rows


async def redis_rows(calls: int, work: Path) -> list[Row]:
    import redis.asyncio as aioredis

    with RedisServer(None, work / "redis.log") as server:
        client = aioredis.Redis.from_url(server.url, max_connections=1024)
        n = 0

        async def one() -> object:
            nonlocal n
            n += 1
            return await client.set(f"one-{n}", b"1", nx=True, ex=60)

        single = await _per_call_async(one, max(200, calls // 10))

        async def concurrent() -> object:
            nonlocal n
            n += 1
            return await asyncio.gather(
                *(client.set(f"c-{n}-{i}", b"1", nx=True, ex=60) for i in range(100))
            )

        many = await _per_call_async(concurrent, max(5, calls // 1000)) / 100

        async def pipelined() -> object:
            nonlocal n
            n += 1
            pipe = client.pipeline(transaction=False)
            for i in range(100):
                pipe.set(f"p-{n}-{i}", b"1", nx=True, ex=60)
            return await pipe.execute()

        piped = await _per_call_async(pipelined, max(5, calls // 1000)) / 100
        await client.aclose()
    return [
        ("keyed: SET NX alone", single, "one connection"),
        ("keyed: SET NX, 100 at once, one connection each (before)", many, ""),
        ("keyed: SET NX, 100 in one pipeline (now)", piped, "per command"),
    ]


async def async_rows(calls: int, batch: int, work: Path) -> list[Row]:
    return [
        await validation_row(calls),
        await producer_row(calls, batch),
        *await put_records_rows(calls, batch, work),
        *await redis_rows(calls, work),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edge_costs", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=20, help="records per PutRecords")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reportgrid-edge-costs"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    import uvloop

    rows = handler_rows(args.calls) + uvloop.run(async_rows(args.calls, args.batch, args.work))
    print("| piece | us CPU | note |\n|---|---|---|")
    for name, us, note in rows:
        print(f"| {name} | {us:,.1f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
