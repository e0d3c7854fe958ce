"""End-to-end reports/s through the local region: submit N light reports with the SDK and
time until every one is terminal.

The region is started as `reportgrid-dev` starts it (reportgrid.local.dev.Supervisor: moto
server, redis-server, the edge, the Kinesis event source feeding the real stream-worker
Lambda handler, the queue worker), on a fresh state directory. Nothing is pinned: the whole
region shares the machine, so the figure is what this machine does, not one process. CPU
per report is that of the whole region (every process of it) over the run.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench import payloads, procstat, stats
from bench.scenarios import Context, Scenario
from reportgrid.client import AsyncReportClient
from reportgrid.local.dev import DevOptions, Supervisor
from reportgrid.local.servers import free_port
from reportgrid.v1 import reports_pb2 as pb

_TERMINAL = frozenset(
    {
        pb.REPORT_STATE_SUCCEEDED,
        pb.REPORT_STATE_FAILED,
        pb.REPORT_STATE_CANCELLED,
        pb.REPORT_STATE_EXPIRED,
    }
)
_SUBMITTERS = 32
_POLL_SECONDS = 0.2


async def _submit_and_wait(
    endpoint: str, key: str, count: int, within: float
) -> tuple[float, float, dict[int, float], dict[str, int]]:
    """(seconds to submit all, seconds until all terminal, per-report seconds from its
    submit until it was seen terminal, final states by name)."""
    client = AsyncReportClient(endpoint, api_key=key, timeout=30)
    submitted: dict[str, float] = {}
    todo = iter(range(count))
    started = time.monotonic()

    async def submitter() -> None:
        for n in todo:
            params = {**payloads.LIGHT_PARAMS, "seed": n}
            at = time.monotonic()
            reply = await client.submit(payloads.LIGHT_KIND, params, output_format="CSV")
            submitted[reply.report_id] = at

    await asyncio.gather(*(submitter() for _ in range(_SUBMITTERS)))
    submit_seconds = time.monotonic() - started
    done: dict[str, float] = {}
    states: dict[str, int] = {}
    deadline = started + within
    while len(done) < len(submitted) and time.monotonic() < deadline:
        waiting = [rid for rid in submitted if rid not in done]
        for chunk in range(0, len(waiting), _SUBMITTERS):
            replies = await asyncio.gather(
                *(client.get(rid) for rid in waiting[chunk : chunk + _SUBMITTERS])
            )
            now = time.monotonic()
            for reply in replies:
                if reply.state in _TERMINAL:
                    done[reply.report_id] = now
                    name = pb.ReportState.Name(reply.state).removeprefix("REPORT_STATE_")
                    states[name] = states.get(name, 0) + 1
        if len(done) < len(submitted):
            await asyncio.sleep(_POLL_SECONDS)
    total = time.monotonic() - started
    await client.close()
    per_report = {i: done[rid] - submitted[rid] for i, rid in enumerate(done)}
    pending = len(submitted) - len(done)
    if pending:
        states["NOT_TERMINAL"] = pending
    return submit_seconds, total, per_report, states


def run(sc: Scenario, ctx: Context) -> dict[str, Any]:
    work = ctx.work_dir / "region"
    port = free_port()
    options = DevOptions(
        edge_port=port, state_dir=work, persist=False, stop_grace_seconds=5.0, shards=2
    )
    console_path = work.parent / "region-console.log"
    started = time.time()
    with open(console_path, "w") as console:
        region = Supervisor(options, console=console)
        try:
            region.check_ports()
            region.state.prepare(persist=False)
            region.start_servers()
            env = region.bootstrap()
            region.start_workers(env)
            region.wait_until_serving()
            cpu_before = sum(procstat.tree_cpu_seconds(pid) for pid in _region_pids(region))
            submit_s, total_s, per_report, states = asyncio.run(
                _submit_and_wait(f"127.0.0.1:{port}", region.api_key, sc.requests, 180.0)
            )
            cpu_used = sum(procstat.tree_cpu_seconds(pid) for pid in _region_pids(region))
            cpu_used -= cpu_before
        finally:
            region.shutdown(5.0)
    problems = []
    if states.get("SUCCEEDED", 0) != sc.requests:
        problems.append(f"not every report SUCCEEDED: {states}")
    return {
        "scenario": sc.name,
        "description": sc.description,
        "server": "region",
        "method": sc.method,
        "baseline": None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "command": f"python -m bench --only {sc.name}  ({sc.requests} reports via "
        f"reportgrid.client.AsyncReportClient, {_SUBMITTERS} submitting at once)",
        "paced_command": None,
        "requests": sc.requests,
        "connections": 1,
        "streams_per_connection": _SUBMITTERS,
        "in_flight": _SUBMITTERS,
        "throughput_rps": round(sc.requests / total_s, 1),
        "submit_rps": round(sc.requests / submit_s, 1),
        "duration_s": round(total_s, 3),
        "latency_ms_saturated": stats.latency_ms(int(s * 1e6) for s in per_report.values()),
        "paced_rps": None,
        "latency_ms_half_saturation": None,
        "server_cpu_s": round(cpu_used, 3),
        "server_cpu_us_per_request": round(cpu_used / sc.requests * 1e6, 1),
        "calls_sent": sc.requests,
        "replies_ok": states.get("SUCCEEDED", 0),
        "statuses": states,
        "cpus": "not pinned: the whole local region shares every CPU",
        "load_average_at_start": os.getloadavg(),
        "problems": problems,
        "warnings": [],
    }


def _region_pids(region: Supervisor) -> list[int]:
    pids = [c.process.pid for c in region.children if c.process is not None]
    servers = (region.moto, region.redis)
    pids.extend(s.process.pid for s in servers if s is not None and s.process is not None)
    return pids
