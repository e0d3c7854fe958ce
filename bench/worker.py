"""The worker scenarios: what a light report costs the stream worker (the Lambda handler,
a Kinesis batch at a time) and what a heavy report's overhead costs the queue worker, in
the worker's own CPU, apart from the emulator's.

Each scenario starts its own moto server and redis-server (processes of their own), and
the worker as a child process (bench/worker_child.py) with the deployed worker size
(cdk/config.py Capacity: the Lambda's 1,769 MB and one vCPU; the queue worker's task).
The worker's CPU (bench/procstat.py, its whole process tree: the heavy path's pool
children included) and moto's are read around the measured part only, after a warm-up
batch; the AWS calls are counted in the worker by a botocore hook. Every report is then
read back: each SUCCEEDED once, none lost.

The figure is read against the null gRPC server's CPU per request measured in the same
scenario (bench/null_server.py, a short SubmitReport run): the target is at most 10 times
that per light report.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Final

from bench import procstat, scenarios
from bench.fake_kinesis import FakeKinesisProcess
from bench.payloads import SUBMIT
from bench.scenarios import Context, Scenario
from reportgrid import resources
from reportgrid.local.bootstrap import create_region
from reportgrid.local.servers import MotoServer, RedisServer, free_port

ENV = resources.ENV
TARGET_FACTOR: Final = 10.0
# The deployed sizes (cdk/config.py Capacity defaults; the CDK template passes them to the
# workers as these variables, cdk/constructs/worker_size.py).
LAMBDA_MEMORY_MIB: Final = 1769
LAMBDA_VCPUS: Final = 1
QUEUE_WORKER_MEMORY_MIB: Final = 8192
QUEUE_WORKER_VCPUS: Final = 2
QUEUE_WORKER_CONCURRENCY: Final = 2
BENCH_ID_SECRET: Final = "bench-id-secret-" + "x" * 32
_NULL_REQUESTS: Final = 6000
# The light row whose AWS calls go through a keep-alive front of moto (bench/fake_kinesis.py
# forwards everything but PutRecords): moto answers `Connection: close`, so against it every
# lean call pays a new TCP connection that AWS, keeping HTTPS connections open, does not.
KEEPALIVE_ROW: Final = "worker-light-keepalive"
# Run the worker child on the workers' code of another source tree (a before figure).
OTHER_CODE: Final = "BENCH_WORKER_CODE"


def worker_scenarios(scale: float) -> list[Scenario]:
    def n(x: int) -> int:
        return max(100, int(x * scale))

    return [
        Scenario(
            "worker-light",
            "null",
            SUBMIT,
            n(2000),
            1,
            100,
            "stream worker: light synthetic reports (output_rows 10), Kinesis batches of 100",
            runner=run_light,
        ),
        Scenario(
            KEEPALIVE_ROW,
            "null",
            SUBMIT,
            n(2000),
            1,
            100,
            "stream worker as worker-light, its AWS calls on kept-alive connections (moto "
            "behind bench.fake_kinesis, which keeps them open as AWS does; moto closes each)",
            runner=run_light,
        ),
        Scenario(
            "worker-heavy",
            "null",
            SUBMIT,
            n(200),
            1,
            2,
            "queue worker: heavy synthetic reports with cpu_ms 0 (the path's overhead)",
            runner=run_heavy,
        ),
    ]


def run_light(sc: Scenario, ctx: Context) -> dict[str, Any]:
    return _run(sc, ctx, ["light", "--reports", str(sc.requests), "--batch", str(sc.streams)])


def run_heavy(sc: Scenario, ctx: Context) -> dict[str, Any]:
    return _run(sc, ctx, ["heavy", "--reports", str(sc.requests)])


def null_cpu_us_per_request(ctx: Context) -> float:
    """The null server's CPU per SubmitReport in this run (a short saturated run)."""
    baseline = Scenario(
        "null-submit-baseline",
        "null",
        SUBMIT,
        _NULL_REQUESTS,
        20,
        10,
        "null server baseline for a worker scenario",
        paced=False,
        warmup=500,
    )
    return float(scenarios.run_scenario(baseline, ctx)["server_cpu_us_per_request"])


def child_env(endpoint: str, redis_url: str, region: str, *, heavy: bool) -> dict[str, str]:
    aws = create_region(region, endpoint, shards=1)
    size = (
        {
            ENV.WORKER_MEMORY_MIB: str(QUEUE_WORKER_MEMORY_MIB),
            ENV.WORKER_VCPUS: str(QUEUE_WORKER_VCPUS),
            ENV.WORKER_CONCURRENCY: str(QUEUE_WORKER_CONCURRENCY),
        }
        if heavy
        else {
            ENV.WORKER_MEMORY_MIB: str(LAMBDA_MEMORY_MIB),
            ENV.WORKER_VCPUS: str(LAMBDA_VCPUS),
        }
    )
    return {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        **os.environ,
        **aws.environ(),
        **size,
        ENV.REDIS_URL: redis_url,
        ENV.ID_SECRETS: BENCH_ID_SECRET,
        ENV.LOG_LEVEL: "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


def _expect(stream: IO[str], word: str, log: list[str]) -> str:
    """The rest of the first line starting with `word` (other lines are the worker's
    logs and metrics, kept for a failure's message)."""
    while line := stream.readline():
        if line.startswith(word):
            return line[len(word) :].strip()
        log.append(line)
    raise scenarios.ScenarioError(f"the worker exited before '{word}': {''.join(log[-20:])}")


def _run(sc: Scenario, ctx: Context, argv: list[str]) -> dict[str, Any]:
    null_us = null_cpu_us_per_request(ctx)
    work: Path = ctx.work_dir / sc.name
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    log: list[str] = []
    with (
        MotoServer(None, work / "moto.log") as moto,
        RedisServer(None, work / "redis.log") as redis,
        contextlib.ExitStack() as stack,
    ):
        endpoint = moto.endpoint_url
        if sc.name == KEEPALIVE_ROW:
            front = FakeKinesisProcess(
                moto.endpoint_url, work / "keepalive.log", close=False, port=free_port()
            ).start()
            stack.callback(front.stop)
            endpoint = front.endpoint_url
        env = child_env(endpoint, redis.url, "us-east-1", heavy=argv[0] == "heavy")
        if code := os.environ.get(OTHER_CODE):
            # The workers' code of another tree (e.g. `git archive HEAD`): a before figure.
            parts = ("workers", "core", "client", "edge")
            env["PYTHONPATH"] = os.pathsep.join(str(Path(code) / part) for part in parts)
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.worker_child", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            _expect(child.stdout, "ready", log)
            assert moto.process is not None
            worker_before = procstat.tree_cpu_seconds(child.pid)
            own_before = procstat.own_cpu_seconds(child.pid)
            moto_before = procstat.tree_cpu_seconds(moto.process.pid)
            child.stdin.write("go\n")
            child.stdin.flush()
            done = json.loads(_expect(child.stdout, "done", log))
            worker_cpu = procstat.tree_cpu_seconds(child.pid) - worker_before
            own_cpu = procstat.own_cpu_seconds(child.pid) - own_before
            moto_cpu = procstat.tree_cpu_seconds(moto.process.pid) - moto_before
            counted = json.loads(_expect(child.stdout, "counted", log))
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return summarize(
        sc,
        done,
        counted=counted,
        worker_cpu=worker_cpu,
        own_cpu=own_cpu,
        moto_cpu=moto_cpu,
        null_us=null_us,
        started=started,
    )


def summarize(
    sc: Scenario,
    done: dict[str, Any],
    *,
    counted: dict[str, int],
    worker_cpu: float,
    own_cpu: float,
    moto_cpu: float,
    null_us: float,
    started: float,
) -> dict[str, Any]:
    reports = int(done["reports"])
    calls = {str(k): int(v) for k, v in done["calls"].items()}
    worker_us = worker_cpu / reports * 1e6
    problems = []
    if counted.get("SUCCEEDED", 0) != reports:
        problems.append(f"not every report SUCCEEDED exactly once: {counted}")
    calls_per_report = sum(calls.values()) / reports
    if sc.name == "worker-light" and calls_per_report > 3:
        problems.append(f"{calls_per_report:.2f} AWS calls per light report (target <= 3)")
    return {
        "scenario": sc.name,
        "description": sc.description,
        "server": "worker",
        "method": "run report",
        "baseline": None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "command": f"python -m bench --only {sc.name}  ({reports} reports through "
        f"bench/worker_child.py, moto and redis in their own processes)",
        "paced_command": None,
        "requests": reports,
        "connections": 1,
        "streams_per_connection": sc.streams,
        "in_flight": sc.streams,
        "throughput_rps": round(reports / float(done["wall_s"]), 1),
        "duration_s": float(done["wall_s"]),
        "latency_ms_saturated": None,
        "paced_rps": None,
        "latency_ms_half_saturation": None,
        "server_cpu_s": round(worker_cpu, 3),
        "server_cpu_us_per_request": round(worker_us, 1),
        "worker_cpu_us_per_report": round(worker_us, 1),
        # The heavy path's split: the worker process itself (SQS, DynamoDB, Redis, leases)
        # and its process pool's children (the generator). Light: all in the process.
        "worker_process_cpu_us_per_report": round(own_cpu / reports * 1e6, 1),
        "pool_cpu_us_per_report": round((worker_cpu - own_cpu) / reports * 1e6, 1),
        "moto_cpu_us_per_report": round(moto_cpu / reports * 1e6, 1),
        "null_cpu_us_per_request": round(null_us, 1),
        "worker_to_null_ratio": round(worker_us / null_us, 2) if null_us else None,
        "aws_calls_per_report": round(calls_per_report, 3),
        "aws_calls": calls,
        "calls_sent": reports,
        "replies_ok": counted.get("SUCCEEDED", 0),
        "statuses": counted,
        "cpus": "not pinned: worker, moto and redis each in a process of their own",
        "load_average_at_start": os.getloadavg(),
        "problems": problems,
        "warnings": [],
    }
