"""A Python load generator for what h2load cannot do: a different request body per call.

h2load sends one body file over and over, so every GetReport asks for the same report
(which the edge then answers from its in-process cache). GetReport on a cold report needs
each call to name another report; this sends GetReport once per id of an ids file, with a
fixed number of calls in flight on one grpc.aio channel per process, and writes per-call
latencies and statuses as JSON.

    python -m bench.grpc_load --target 127.0.0.1:P --ids FILE --key KEY --out FILE.json

It costs far more CPU per call than h2load, so the bench pins it to the load CPUs, away
from the server, and reports the server's own CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc

from bench import stats
from bench.scenarios import Context, Scenario
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc as pb_grpc

T = TypeVar("T")


async def drive(
    items: Iterable[T], call: Callable[[T], Awaitable[object]], in_flight: int
) -> dict[str, Any]:
    """Send `call(item)` once per item with `in_flight` calls outstanding; per-call
    latencies (us) and statuses by gRPC code, as the bench reads them back."""
    latencies_us: list[int] = []
    statuses: Counter[str] = Counter()
    queue = iter(items)
    calls = 0

    async def worker() -> None:
        nonlocal calls
        for item in queue:  # shared iterator: each item is sent once
            started = time.perf_counter_ns()
            try:
                await call(item)
                statuses["OK"] += 1
            except grpc.aio.AioRpcError as err:
                statuses[err.code().name] += 1
            calls += 1
            latencies_us.append((time.perf_counter_ns() - started) // 1000)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.monotonic() - started
    return {"calls": calls, "seconds": elapsed, "statuses": statuses, "latency_us": latencies_us}


async def run(target: str, ids: list[str], key: str, in_flight: int) -> dict[str, Any]:
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ReportServiceStub(channel)

        async def get(report_id: str) -> object:
            request = pb.GetReportRequest(report_id=report_id)
            return await stub.GetReport(request, metadata=metadata, timeout=30)

        return await drive(ids, get, in_flight)


def result_row(
    sc: Scenario,
    ctx: Context,
    *,
    started: float,
    command: str,
    connections: int,
    streams: int,
    seconds: float,
    latencies_us: list[int],
    cpu_used: float,
    calls: int,
    warmup: int,
    ok: int,
    statuses: Mapping[str, int],
    problems: list[str],
) -> dict[str, Any]:
    """The result row of a Python-generator scenario (cold Get, keyed Submit), in the shape
    bench/report.py reads for every scenario. `calls` and `ok` are the generator's timed
    calls and its OK answers; `warmup` calls (all OK) came before them; `statuses` are what
    the server counted, warm-up included."""
    return {
        "scenario": sc.name,
        "description": sc.description,
        "server": sc.server,
        "method": sc.method,
        "baseline": sc.baseline,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "command": command,
        "paced_command": None,
        "requests": calls,
        "connections": connections,
        "streams_per_connection": streams,
        "in_flight": streams * connections,
        "throughput_rps": round(calls / seconds, 1) if seconds else 0.0,
        "duration_s": round(seconds, 3),
        "latency_ms_saturated": stats.latency_ms(latencies_us),
        "paced_rps": None,
        "latency_ms_half_saturation": None,
        "server_cpu_s": round(cpu_used, 3),
        "server_cpu_us_per_request": round(cpu_used / max(calls, 1) * 1e6, 1),
        "calls_sent": calls + warmup,
        "replies_ok": ok + warmup,
        "statuses": statuses,
        "cpus": ctx.cpus.note,
        "load_average_at_start": os.getloadavg(),
        "problems": problems,
        "warnings": [],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_load", description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--ids", type=Path, required=True, help="one report id per line")
    parser.add_argument("--key", required=True, help="API key")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    ids = [line for line in args.ids.read_text().splitlines() if line]
    import uvloop

    result = uvloop.run(run(args.target, ids, args.key, args.in_flight))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
