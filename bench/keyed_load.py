"""Keyed SubmitReport: what the SDK sends (it puts an idempotency key on every submit), with
a different key per call, so that every call is a new report and pays the keyed path's
claim (one DynamoDB PutItem, grpc_edge/idempotency.py; answered by bench.fake_kinesis in
the edge-alone rows). h2load sends one body over and over (every call after the first would
be a deduplicated no-op), so this runs a grpc.aio load generator with prepared bodies.

    python -m bench.keyed_load --target 127.0.0.1:P --key KEY --calls N --out FILE.json

The generator costs more CPU per call than h2load: the null server is loaded by the same
generator (`null-submit-keyed`), and the edge's row is read against that one. Like h2load
in the other rows it spreads the calls over 20 connections (`--connections`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any, Final

import grpc

from bench import grpc_load, payloads, procstat, profile, stats
from bench.scenarios import Context, Scenario

# A scenario whose name has this runs the same generator without keys (bench/edge.py).
UNKEYED_SUFFIX: Final = "-unkeyed-pygen"


def bodies(calls: int, *, keyed: bool = True) -> list[bytes]:
    """`calls` Submit bodies, each with its own idempotency key (or none: the control row
    that tells the generator's shape from the keyed path's cost)."""
    run = uuid.uuid4().hex[:12]
    request = payloads.submit_request()
    out = []
    for index in range(calls):
        if keyed:
            request.idempotency_key = f"bench-{run}-{index}"
        out.append(request.SerializeToString())
    return out


# Each channel its own TCP connection: grpc shares one between channels to the same
# target otherwise (a process-wide subchannel pool).
_OWN_CONNECTION: Final = (("grpc.use_local_subchannel_pool", 1),)


async def load(
    target: str,
    key: str,
    calls: int,
    in_flight: int,
    *,
    connections: int = 1,
    keyed: bool = True,
) -> dict[str, Any]:
    """`calls` Submits, `in_flight` outstanding, spread over `connections` connections (as
    h2load's `-c` does for the other rows: the null server's transport costs less per call
    on one connection than on twenty, the edge's per-call work does not)."""
    metadata = (("authorization", f"Bearer {key}"),)
    channels = [
        grpc.aio.insecure_channel(target, options=_OWN_CONNECTION) for _ in range(connections)
    ]
    try:
        # Bytes in, bytes out: the generator spends nothing on protobuf.
        submits: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(payloads.method_path(payloads.SUBMIT)) for channel in channels
        ]
        turn = itertools.count()

        async def send(body: bytes) -> object:
            submit = submits[next(turn) % len(submits)]
            return await submit(body, metadata=metadata, timeout=30)

        return await grpc_load.drive(bodies(calls, keyed=keyed), send, in_flight)
    finally:
        for channel in channels:
            await channel.close()


def run(sc: Scenario, ctx: Context) -> dict[str, Any]:
    """Start the server, send `sc.requests` keyed submits, check every status."""
    cpu = min(ctx.cpus.load) if ctx.cpus.load else None
    in_flight = sc.connections * sc.streams
    server = ctx.servers[sc.server]()
    out = ctx.work_dir / f"{sc.name}-load.json"
    argv = [sys.executable, "-m", "bench.keyed_load", "--target", "", "--key", ctx.api_key]
    argv += ["--calls", str(sc.requests), "--in-flight", str(in_flight), "--out", str(out)]
    argv += ["--connections", str(sc.connections)]
    if UNKEYED_SUFFIX in sc.name:
        argv.append("--unkeyed")
    problems: list[str] = []
    started = time.time()

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    with server:
        argv[4] = f"127.0.0.1:{server.port}"
        # A short warm-up first, as the h2load scenarios have.
        warm = [*argv[:7], "--calls", "500", *argv[9:]]
        subprocess.run(warm, preexec_fn=pin, check=True)
        with profile.sampling(server.pid, ctx.profile_dir, sc.name, ctx.cpus.load):
            cpu_before = procstat.tree_cpu_seconds(server.pid)
            done = subprocess.run(argv, preexec_fn=pin, check=False)
            cpu_used = procstat.tree_cpu_seconds(server.pid) - cpu_before
    if done.returncode != 0:
        problems.append(f"the load generator exited with code {done.returncode}")
        output: dict[str, Any] = {"statuses": {}, "latency_us": [], "seconds": 0.0}
    else:
        output = json.loads(out.read_text())
    counts = dict(output["statuses"])
    calls = sum(counts.values())
    server_counts = server.status_counts(sc.method)
    if server_counts is not None:
        problems.extend(stats.StatusCheck(server_counts, sc.expected, calls + 500).problems)
    if counts.get("OK", 0) != sc.requests:
        problems.append(f"{counts.get('OK', 0)} of {sc.requests} calls OK: {counts}")
    shown = " ".join("<key>" if a == ctx.api_key else a for a in argv)
    return grpc_load.result_row(
        sc,
        ctx,
        started=started,
        command=shown,
        connections=sc.connections,
        streams=sc.streams,
        seconds=float(output["seconds"]),
        latencies_us=output["latency_us"],
        cpu_used=cpu_used,
        calls=calls,
        warmup=500,
        ok=counts.get("OK", 0),
        statuses=server_counts if server_counts is not None else counts,
        problems=problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keyed_load", description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--key", required=True, help="API key")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--out", type=argparse.FileType("w"), required=True)
    parser.add_argument("--unkeyed", action="store_true", help="no idempotency keys")
    args = parser.parse_args(argv)
    import uvloop

    result = uvloop.run(
        load(
            args.target,
            args.key,
            args.calls,
            args.in_flight,
            connections=args.connections,
            keyed=not args.unkeyed,
        )
    )
    json.dump(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
