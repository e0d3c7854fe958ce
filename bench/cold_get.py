"""GetReport on cold reports: every call names a report the edge has not read before, so
each goes past the in-process cache to Redis (a miss) and DynamoDB (the moto server).

The reports are seeded into the table before the run (terminal, as a worker leaves them);
bench.grpc_load asks for each once, from as many processes as there are load CPUs. The
figures therefore include moto's DynamoDB GetItem (serialized, on the load CPU): the
edge's own CPU per call is the comparable figure, throughput is bounded by moto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench import grpc_load, payloads, procstat, stats
from bench.scenarios import Context, Scenario
from reportgrid import records
from reportgrid.local.bootstrap import client

_BATCH = 25  # DynamoDB BatchWriteItem's limit


def seed(endpoint_url: str, table: str, count: int) -> list[str]:
    """Put `count` terminal reports of the bench tenant; their ids."""
    ids = payloads.codec()
    ddb = client("dynamodb", payloads.REGION, endpoint_url)
    report_ids: list[str] = []
    pending: list[dict[str, Any]] = []
    for _ in range(count):
        record = payloads.succeeded_record(ids)
        report_ids.append(record.report_id)
        pending.append({"PutRequest": {"Item": records.to_item(record)}})
        if len(pending) == _BATCH:
            _write(ddb, table, pending)
            pending = []
    if pending:
        _write(ddb, table, pending)
    return report_ids


def _write(ddb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    while requests:
        response = ddb.batch_write_item(RequestItems={table: requests})
        requests = response.get("UnprocessedItems", {}).get(table, [])


def run(sc: Scenario, ctx: Context, report_ids: list[str]) -> dict[str, Any]:
    """Start the edge, ask for every id once, check every status."""
    load_cpus = sorted(ctx.cpus.load) if ctx.cpus.load else [None]
    slices = [report_ids[i :: len(load_cpus)] for i in range(len(load_cpus))]
    in_flight = max(1, sc.connections * sc.streams // len(load_cpus))
    server = ctx.servers[sc.server]()
    problems: list[str] = []
    started = time.time()
    with server:
        argvs = []
        procs = []
        cpu_before = procstat.tree_cpu_seconds(server.pid)
        wall = time.monotonic()
        for index, (cpu, part) in enumerate(zip(load_cpus, slices, strict=True)):
            ids_file = ctx.work_dir / f"{sc.name}-ids-{index}.txt"
            ids_file.write_text("\n".join(part) + "\n")
            out = ctx.work_dir / f"{sc.name}-load-{index}.json"
            argv = [
                sys.executable,
                "-m",
                "bench.grpc_load",
                "--target",
                f"127.0.0.1:{server.port}",
                "--ids",
                str(ids_file),
                "--key",
                ctx.api_key,
                "--in-flight",
                str(in_flight),
                "--out",
                str(out),
            ]
            argvs.append(argv)

            def pin(cpu: int | None = cpu) -> None:
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})

            procs.append((subprocess.Popen(argv, preexec_fn=pin), out))  # noqa: PLW1509
        outputs = []
        for proc, out in procs:
            if proc.wait(300) != 0:
                problems.append(f"the load generator exited with code {proc.returncode}")
                continue
            outputs.append(json.loads(out.read_text()))
        seconds = time.monotonic() - wall
        cpu_used = procstat.tree_cpu_seconds(server.pid) - cpu_before
    counts: dict[str, int] = {}
    latencies: list[int] = []
    for output in outputs:
        for name, n in output["statuses"].items():
            counts[name] = counts.get(name, 0) + n
        latencies += output["latency_us"]
    calls = sum(counts.values())
    server_counts = server.status_counts(sc.method)
    if server_counts is not None:
        problems.extend(stats.StatusCheck(server_counts, sc.expected, calls).problems)
    if counts.get("OK", 0) != len(report_ids):
        problems.append(f"{counts.get('OK', 0)} of {len(report_ids)} calls OK: {counts}")
    shown = [argvs[0][i] if argvs[0][i] != ctx.api_key else "<key>" for i in range(len(argvs[0]))]
    return grpc_load.result_row(
        sc,
        ctx,
        started=started,
        command=" ".join(shown) + f"  (x{len(argvs)} processes)",
        connections=len(argvs),
        streams=in_flight,
        seconds=seconds,
        latencies_us=latencies,
        cpu_used=cpu_used,
        calls=calls,
        warmup=0,
        ok=counts.get("OK", 0),
        statuses=server_counts if server_counts is not None else counts,
        problems=problems,
    )
