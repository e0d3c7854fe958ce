"""A tenant's submit rate holds across the fleet: the Redis bucket leased out in batches
(grpc_edge/ratelimit.py), measured with real edge processes; and each process's own
limit when Redis is down.

`python -m tests.integration.admin.test_fleet_rate_limit [rate] [seconds]` runs the
measurement alone against a fresh local region and prints the figure docs/RELIABILITY.md
quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_edge.breaker import CircuitBreaker
from grpc_edge.ratelimit import LEASE_BATCH_SECONDS, FleetRateLimiter
from reportgrid import tenants
from reportgrid.cli.admin_store import AdminStore, Target
from reportgrid.errors import ResourceExhausted
from reportgrid.local.bootstrap import RegionResources
from reportgrid.local.servers import free_port
from reportgrid.v1 import reports_pb2_grpc
from tests.integration.edge.conftest import synthetic_request

EDGES = 2
WORKERS_PER_EDGE = 2
RATE = 40.0  # the tenant's quota, submits a second
OFFERED = 5 * RATE  # what the flooding client tries
WARM_UP_SECONDS = 1.5  # spends the bucket's burst; the window is the steady state
WINDOW_SECONDS = 4.0


@dataclass(frozen=True)
class Measured:
    admitted: int  # in the window
    refused: int
    other: int  # neither OK nor RESOURCE_EXHAUSTED
    seconds: float
    rate: float

    @property
    def ratio(self) -> float:
        """Admitted over what the quota allows in the window (1.0 = exact)."""
        return self.admitted / (self.rate * self.seconds)


@contextlib.contextmanager
def edge_fleet(env: dict[str, str], log_dir: Path) -> Iterator[list[int]]:
    """EDGES edge servers (`python -m grpc_edge --workers 2`), each on its own port."""
    ports = [free_port() for _ in range(EDGES)]
    procs = []
    try:
        for port in ports:
            argv = [sys.executable, "-m", "grpc_edge", "--workers", str(WORKERS_PER_EDGE)]
            argv += ["--host", "127.0.0.1", "--port", str(port), "--drain-delay", "0"]
            log = (log_dir / f"edge-{port}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    argv,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        asyncio.run(_until_serving(ports))
        yield ports
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def _until_serving(ports: list[int]) -> None:
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            assert time.monotonic() < deadline, f"the edge on {port} did not start"
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=1
                    )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)


async def flood(ports: list[int], key: str, rate: float) -> Measured:
    """Submit at OFFERED a second for WARM_UP + WINDOW seconds over several connections per
    edge (SO_REUSEPORT spreads connections, not calls, over an edge's workers); count the
    answers of the window."""
    # A local subchannel pool: each channel its own connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        for port in ports
        for _ in range(4 * WORKERS_PER_EDGE)
    ]
    stubs = [reports_pb2_grpc.ReportServiceStub(c) for c in channels]
    metadata = (("authorization", f"Bearer {key}"),)
    counts = {"ok": 0, "refused": 0, "other": 0}
    start = time.monotonic()
    window_start = start + WARM_UP_SECONDS
    end = window_start + WINDOW_SECONDS

    async def one(stub: reports_pb2_grpc.ReportServiceStub) -> None:
        try:
            await stub.SubmitReport(synthetic_request(), metadata=metadata, timeout=5)
            outcome = "ok"
        except grpc.aio.AioRpcError as error:
            exhausted = error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            outcome = "refused" if exhausted else "other"
        if window_start <= time.monotonic() <= end:
            counts[outcome] += 1

    calls: list[asyncio.Task[None]] = []
    sent = 0
    while (now := time.monotonic()) < end:
        due = int((now - start) * OFFERED)
        while sent < due:
            calls.append(asyncio.ensure_future(one(stubs[sent % len(stubs)])))
            sent += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*calls)
    for channel in channels:
        await channel.close()
    return Measured(counts["ok"], counts["refused"], counts["other"], WINDOW_SECONDS, rate)


def measure(aws: RegionResources, env: dict[str, str], log_dir: Path, rate: float) -> Measured:
    store = AdminStore(
        Target(region=aws.region, endpoint_url=aws.endpoint_url, table=aws.table_name)
    )
    store.create_tenant("flood", quotas=tenants.Quotas(submit_per_second=rate))
    key = store.create_key("flood", expires_ms=None).secret
    with edge_fleet(env, log_dir) as ports:
        return asyncio.run(flood(ports, key, rate))


def test_the_submit_rate_holds_across_two_edges_of_two_processes(
    aws: RegionResources, region_env: dict[str, str], tmp_path: Path
) -> None:
    measured = measure(aws, region_env, tmp_path, RATE)
    print(f"fleet rate limit: {measured}, ratio {measured.ratio:.3f}")
    assert measured.other == 0
    # The bound (grpc_edge/ratelimit.py): r x T plus what was leased before the window,
    # at most a batch per process; a little under r when leases are dropped unspent.
    batch = max(1, round(RATE * LEASE_BATCH_SECONDS))
    bound = RATE * WINDOW_SECONDS + EDGES * WORKERS_PER_EDGE * batch
    assert measured.admitted <= bound
    assert measured.admitted >= 0.8 * RATE * WINDOW_SECONDS
    # Per process the limit would have let in up to processes x r
    assert measured.admitted < 2 * RATE * WINDOW_SECONDS


attempts: dict[int, int] = {}  # limiter -> calls made by _admit_for


async def _admit_for(limiter: FleetRateLimiter, seconds: float, rate: float) -> int:
    """How many of a tight loop's calls `limiter` admitted in `seconds`."""
    admitted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        attempts[id(limiter)] = attempts.get(id(limiter), 0) + 1
        try:
            await limiter.admit("acme", rate)
            admitted += 1
        except ResourceExhausted:
            pass
        await asyncio.sleep(0.001)
    return admitted


async def test_two_processes_share_the_bucket_and_fall_back_to_their_own_without_redis(
    redis_url: str,
) -> None:
    rate, seconds = 50.0, 1.5
    # Given two processes' limiters on one Redis: together they get the tenant's rate
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    limiters = [FleetRateLimiter(c, CircuitBreaker("redis")) for c in clients]
    shared = await asyncio.gather(*(_admit_for(x, seconds, rate) for x in limiters))
    assert sum(shared) <= rate * seconds + rate + 2 * rate * LEASE_BATCH_SECONDS
    assert sum(shared) >= rate * seconds
    # Redis is asked at most about once per token per process, however often the tenant
    # tries (a refused process waits locally for the next token)
    assert sum(x.lease_calls for x in limiters) <= len(limiters) * (sum(shared) + 2)
    for x in limiters:
        assert x.lease_calls < attempts[id(x)] / 3
    # When Redis does not answer: each process alone at the tenant's rate
    dead = f"redis://127.0.0.1:{free_port()}"
    down = [aioredis.Redis.from_url(dead, socket_connect_timeout=0.1) for _ in range(2)]
    alone = [FleetRateLimiter(c, CircuitBreaker("redis")) for c in down]
    each = await asyncio.gather(*(_admit_for(x, seconds, rate) for x in alone))
    for admitted in each:
        assert rate * seconds <= admitted <= rate * seconds + rate + 1
    assert all(x.fallbacks > 0 for x in alone)
    for c in clients + down:
        await c.aclose()


if __name__ == "__main__":
    import tempfile

    from reportgrid import resources
    from reportgrid.local.bootstrap import LOCAL_CREDENTIALS, create_region
    from reportgrid.local.servers import MotoServer, RedisServer

    os.environ["AWS_ACCESS_KEY_ID"] = LOCAL_CREDENTIALS["aws_access_key_id"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = LOCAL_CREDENTIALS["aws_secret_access_key"]
    chosen_rate = float(sys.argv[1]) if len(sys.argv) > 1 else RATE
    WINDOW_SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else WINDOW_SECONDS
    OFFERED = 5 * chosen_rate
    with tempfile.TemporaryDirectory() as work:
        logs = Path(work)
        with MotoServer(None, logs / "moto.log") as moto, RedisServer(None, logs / "r.log") as rs:
            region = create_region("us-east-1", moto.endpoint_url, shards=2)
            environ = {
                **region.environ(),
                resources.ENV.REDIS_URL: rs.url,
                resources.ENV.ID_SECRETS: "bench-id-secret-0123456789abcdef",
            }
            result = measure(region, environ, logs, chosen_rate)
    print(f"{EDGES} edges x {WORKERS_PER_EDGE} processes, quota {chosen_rate:g}/s, offered ")
    print(f"{OFFERED:g}/s: {result} ratio {result.ratio:.3f}")
