"""Scenarios: which server, which method, how much load; and the one procedure that runs
any of them:

  1. start the server pinned to the server CPUs (a fresh process per scenario, so its
     per-status counters and CPU figures belong to this scenario alone);
  2. one real gRPC call: the setup works and the reply's exact size is known;
  3. a warm-up run, then the measured run at saturation (h2load, pinned to the load CPUs),
     with the server tree's CPU seconds read from /proc before and after;
  4. a paced run at half the measured throughput, for latency at half saturation;
  5. stop the server and check every status: h2load's own failures, the server's
     per-status counters, and the DATA bytes received (an error reply carries none).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from bench import grpc_frames, h2load, procstat, profile, stats
from bench.payloads import GET, SUBMIT, method_path
from bench.servers import ServerProcess, call_once

GRPC_HEADERS = (("content-type", "application/grpc"), ("te", "trailers"))
PACED_FRACTION = 0.5
PACED_SECONDS = 4.0
PACED_CONNECTIONS = 20


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """Which CPUs the load generator and the server may use."""

    load: set[int] | None
    server: set[int] | None
    note: str

    @classmethod
    def detect(cls) -> CpuPlan:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None, f"only CPU {cpus} available: load and server share it")
        # The server gets one CPU of its own (one edge process is what is measured); the
        # load generator and everything else (moto, redis) share the rest.
        server, load = {cpus[-1]}, set(cpus[:-1])
        return cls(
            load,
            server,
            f"server pinned to CPU {sorted(server)}, h2load (and moto, "
            f"redis) to CPU {sorted(load)}",
        )


@dataclass
class Context:
    """What every scenario of one bench run shares."""

    h2load_binary: str
    work_dir: Path
    cpus: CpuPlan
    api_key: str
    # server kind -> factory; a scenario names the kind it loads.
    servers: dict[str, Callable[[], ServerProcess]]
    # method -> the request message the scenario sends (kind-specific: a hot report id).
    requests: dict[str, dict[str, Message]] = field(default_factory=dict)
    # Scenario-specific checks after the server stopped (e.g. Kinesis count-back).
    after: dict[str, Callable[[dict[str, Any]], list[str]]] = field(default_factory=dict)
    # When set, py-spy samples the server during each saturated run (bench.profile).
    profile_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    server: str  # a key of Context.servers
    method: str  # SUBMIT or GET
    requests: int
    connections: int
    streams: int
    description: str
    paced: bool = True  # also measure latency at half saturation
    paced_seconds: float = PACED_SECONDS
    warmup: int = 1000
    expected: frozenset[str] = frozenset({"OK"})
    baseline: str | None = None  # the null scenario this one is compared with
    # A scenario h2load cannot drive runs its own procedure (cold Get, end to end).
    runner: Callable[[Scenario, Context], dict[str, Any]] | None = None


def _headers(ctx: Context) -> list[tuple[str, str]]:
    return [*GRPC_HEADERS, ("authorization", f"Bearer {ctx.api_key}")]


def _check_run(tag: str, result: h2load.Result, frame_bytes: int) -> list[str]:
    s = result.summary
    problems = []
    if s.failed or s.errored or s.timeout or s.done != s.requests_total:
        problems.append(
            f"{tag}: h2load {s.done}/{s.requests_total} done, {s.failed} failed, "
            f"{s.errored} errored, {s.timeout} timeout"
        )
    if s.status_2xx != s.succeeded or s.status_3xx or s.status_4xx or s.status_5xx:
        problems.append(
            f"{tag}: HTTP statuses other than 200: {s.status_3xx} 3xx, "
            f"{s.status_4xx} 4xx, {s.status_5xx} 5xx"
        )
    replies, leftover = stats.replies_with_data(s.data_bytes, frame_bytes)
    if leftover or replies != s.succeeded:
        problems.append(
            f"{tag}: {s.data_bytes} DATA bytes = {replies} replies of {frame_bytes} bytes "
            f"(+{leftover}) for {s.succeeded} HTTP 200s: some calls ended with a gRPC error"
        )
    return problems


def run_scenario(sc: Scenario, ctx: Context) -> dict[str, Any]:
    """Run one scenario: its own runner, or the h2load procedure."""
    return sc.runner(sc, ctx) if sc.runner is not None else _run_h2load(sc, ctx)


def _run_h2load(sc: Scenario, ctx: Context) -> dict[str, Any]:
    request = ctx.requests[sc.server][sc.method]
    path = method_path(sc.method)
    body = grpc_frames.frame(request)
    body_file = ctx.work_dir / f"body-{sc.name}.bin"
    body_file.write_bytes(body)
    url_base = "http://127.0.0.1:{port}" + path
    problems: list[str] = []
    server = ctx.servers[sc.server]()
    started = time.time()
    with server:
        auth = {"authorization": f"Bearer {ctx.api_key}"}
        status, reply = call_once(server.port, path, grpc_frames.unframe(body), auth)
        if status != "OK":
            raise ScenarioError(f"{sc.name}: the first call failed with {status}")
        frame_bytes = grpc_frames.PREFIX.size + len(reply)
        url = url_base.format(port=server.port)

        def spec(n: int, c: int, m: int, rps: float | None = None) -> h2load.LoadSpec:
            return h2load.LoadSpec(
                url=url,
                body_file=body_file,
                requests=n,
                connections=c,
                streams=m,
                headers=_headers(ctx),
                rate_per_connection=rps,
            )

        replies_ok = 1  # the first call

        def load(tag: str, s: h2load.LoadSpec) -> h2load.Result:
            nonlocal replies_ok
            result = h2load.run(
                s,
                binary=ctx.h2load_binary,
                work_dir=ctx.work_dir,
                cpus=ctx.cpus.load,
                tag=f"{sc.name}-{tag}",
            )
            problems.extend(_check_run(tag, result, frame_bytes))
            replies_ok += stats.replies_with_data(result.summary.data_bytes, frame_bytes)[0]
            return result

        sent = 1
        if sc.warmup:
            warm = load("warmup", spec(sc.warmup, min(sc.connections, 50), sc.streams))
            sent += warm.summary.requests_total
        with profile.sampling(server.pid, ctx.profile_dir, sc.name, ctx.cpus.load):
            cpu_before = procstat.tree_cpu_seconds(server.pid)
            measured = load("saturated", spec(sc.requests, sc.connections, sc.streams))
            cpu_used = procstat.tree_cpu_seconds(server.pid) - cpu_before
        sent += measured.summary.requests_total
        paced = None
        if sc.paced:
            rate = measured.summary.req_per_s * PACED_FRACTION
            conns = min(PACED_CONNECTIONS, sc.connections)
            per_conn = max(1, round(rate / conns))
            n = max(conns, int(per_conn * conns * sc.paced_seconds))
            paced = load("paced", spec(n, conns, 1, per_conn))
            sent += paced.summary.requests_total
    counts = server.status_counts(sc.method)
    warnings = []
    if counts is None:
        warnings.append(
            f"no per-status counters: {server.counters_unavailable}; statuses "
            "were checked by the DATA byte count only"
        )
    else:
        problems.extend(stats.StatusCheck(counts, sc.expected, sent).problems)
    m = measured.summary
    out: dict[str, Any] = {
        "scenario": sc.name,
        "description": sc.description,
        "server": sc.server,
        "method": sc.method,
        "baseline": sc.baseline,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "command": shlex.join(measured.argv),
        "paced_command": shlex.join(paced.argv) if paced else None,
        "requests": m.requests_total,
        "connections": sc.connections,
        "streams_per_connection": sc.streams,
        "in_flight": sc.connections * sc.streams,
        "throughput_rps": round(m.req_per_s, 1),
        "duration_s": round(m.finished_s, 3),
        "latency_ms_saturated": stats.latency_ms(e.duration_us for e in measured.log),
        "paced_rps": round(paced.summary.req_per_s, 1) if paced else None,
        "latency_ms_half_saturation": (
            stats.latency_ms(e.duration_us for e in paced.log) if paced else None
        ),
        "server_cpu_s": round(cpu_used, 3),
        "server_cpu_us_per_request": round(cpu_used / m.requests_total * 1e6, 1),
        "reply_frame_bytes": frame_bytes,
        "request_frame_bytes": len(body),
        "calls_sent": sent,
        "replies_ok": replies_ok,
        "statuses": counts,
        "cpus": ctx.cpus.note,
        "load_average_at_start": os.getloadavg(),
        "problems": problems,
        "warnings": warnings,
    }
    if sc.name in ctx.after:
        problems.extend(ctx.after[sc.name](out))
    return out


class ScenarioError(RuntimeError):
    """A scenario could not run at all."""


def null_scenarios(scale: float) -> list[Scenario]:
    def n(x: int) -> int:
        return max(200, int(x * scale))

    return [
        Scenario(
            "null-submit",
            "null",
            SUBMIT,
            n(30_000),
            20,
            10,
            "null server, SubmitReport reply of the edge's size",
        ),
        Scenario(
            "null-get",
            "null",
            GET,
            n(30_000),
            20,
            10,
            "null server, GetReport reply of the hot report's size",
        ),
        Scenario(
            "null-inflight-10k",
            "null",
            SUBMIT,
            max(10_000, n(30_000)),
            1000,
            10,
            "null server, 1,000 connections x 10 streams = 10,000 in flight",
            paced=False,
            warmup=0,
        ),
    ]


def smoke_scenarios() -> list[Scenario]:
    """A few thousand calls against the null server: the whole plumbing in seconds."""
    return [
        Scenario(
            "null-submit",
            "null",
            SUBMIT,
            3000,
            20,
            10,
            "null server, SubmitReport (smoke)",
            warmup=300,
            paced_seconds=1.0,
        ),
        Scenario(
            "null-get",
            "null",
            GET,
            2000,
            20,
            10,
            "null server, GetReport (smoke)",
            warmup=0,
            paced=False,
        ),
    ]
