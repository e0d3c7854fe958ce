"""The edge scenarios: a local region (moto server + redis-server, pinned to the load CPUs
so that what they cost is not charged to the edge), an API key and a terminal report
seeded into it, and the edge (`python -m grpc_edge`) started per scenario on its own CPU.

Per-status counters come from the edge's own metrics: grpc_edge.metrics writes CloudWatch
EMF documents to stdout, one per (Method, Code) with a `Requests` count. They are read from
the edge's log after it stopped (the edge flushes on shutdown). If none are found, the
scenario says so and relies on the DATA byte check, which counts replies that carried a
message (an error reply carries none).

Submit scenarios count the tasks back from the Kinesis stream afterwards: every
acknowledged submit must be there (zero acked-but-missing).

The `-fastkinesis` rows point the edge at bench.fake_kinesis, which answers PutRecords at
once over kept-alive connections (and forwards everything else to moto): the edge's own
cost, without the emulator's. `-fastkinesis-close` answers `Connection: close` as moto does:
the difference is what a new connection per PutRecords costs. The moto rows stay the
realistic ones (a Kinesis round trip that takes time); every row is read against the null
server of the same run.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cold_get, end_to_end, keyed_load, payloads, procstat
from bench.fake_kinesis import FakeKinesisProcess
from bench.payloads import GET, SUBMIT
from bench.scenarios import Context, Scenario
from bench.servers import ServerProcess
from reportgrid import apikeys, records, resources, tasks
from reportgrid.local.bootstrap import RegionResources, client, create_region
from reportgrid.local.servers import MotoServer, RedisServer, free_port

ENV = resources.ENV
# The edge's admission limit per process is raised above the 10,000-in-flight scenario so
# that the scenario measures the transport, not the (deliberate) limit; so are one
# tenant's shares of it (rate, and concurrent calls: 500 by default, which the bench's one
# tenant, standing for many, exceeds whenever Kinesis answers slowly).
BENCH_EDGE_ENV = {
    ENV.MAX_CONCURRENT_RPCS: "20000",
    ENV.TENANT_MAX_CONCURRENT_RPCS: "20000",
    ENV.DRAIN_GRACE_SECONDS: "5",
    ENV.TENANT_RATE_LIMIT: "1000000",
    ENV.LOG_LEVEL: "INFO",  # the edge says "listening on" at INFO
}


def edge_scenarios(scale: float) -> list[Scenario]:
    def n(x: int) -> int:
        return max(200, int(x * scale))

    return [
        Scenario(
            "edge-submit",
            "edge",
            SUBMIT,
            n(20_000),
            20,
            10,
            "edge, SubmitReport (synthetic kind), tasks counted back from Kinesis",
            baseline="null-submit",
        ),
        Scenario(
            "edge-submit-fastkinesis",
            "edge-fastkinesis",
            SUBMIT,
            n(20_000),
            20,
            10,
            "edge, SubmitReport, Kinesis answered at once over kept-alive connections "
            "(bench.fake_kinesis): the edge's own cost",
            baseline="null-submit",
        ),
        Scenario(
            "edge-submit-fastkinesis-close",
            "edge-fastkinesis-close",
            SUBMIT,
            n(20_000),
            20,
            10,
            "edge, SubmitReport, Kinesis answered at once but Connection: close per call "
            "(as moto does)",
            paced=False,
            baseline="null-submit",
        ),
        Scenario(
            "null-submit-keyed",
            "null",
            SUBMIT,
            n(10_000),
            20,
            10,
            "null server, keyed SubmitReport (a new idempotency key per call), Python "
            "load generator (bench.keyed_load)",
            paced=False,
            runner=keyed_load.run,
        ),
        Scenario(
            "edge-submit-keyed",
            "edge-fastkinesis",
            SUBMIT,
            n(10_000),
            20,
            10,
            "edge, keyed SubmitReport (a new idempotency key per call: its claim PutItem), "
            "fast Kinesis, same generator as null-submit-keyed",
            paced=False,
            baseline="null-submit-keyed",
            runner=_keyed_counted,
        ),
        Scenario(
            f"edge-submit{keyed_load.UNKEYED_SUFFIX}",
            "edge-fastkinesis",
            SUBMIT,
            n(10_000),
            20,
            10,
            "edge, unkeyed SubmitReport, same generator as edge-submit-keyed: tells the "
            "keyed path's cost from the generator's shape (Python, 20 connections)",
            paced=False,
            baseline="null-submit-keyed",
            runner=_keyed_counted,
        ),
        Scenario(
            "edge-naive-submit",
            "edge-naive",
            SUBMIT,
            n(5_000),
            20,
            10,
            "edge with one PutRecords call per request (no batching)",
            baseline="null-submit",
        ),
        Scenario(
            "edge-get-hot",
            "edge",
            GET,
            n(20_000),
            20,
            10,
            "edge, GetReport of one terminal report (cache-hot)",
            baseline="null-get",
        ),
        Scenario(
            "edge-get-cold",
            "edge",
            GET,
            n(3_000),
            1,
            64,
            "edge, GetReport of reports it has not read (Redis miss, DynamoDB read); "
            "Python load generator, a different id per call",
            paced=False,
            baseline="null-get",
            runner=_run_cold_get,
        ),
        Scenario(
            "region-end-to-end",
            "edge",
            SUBMIT,
            n(600),
            1,
            32,
            "local region (reportgrid-dev): SDK submits, time until every report is terminal",
            paced=False,
            runner=end_to_end.run,
        ),
        Scenario(
            "edge-inflight-10k",
            "edge",
            SUBMIT,
            max(10_000, n(20_000)),
            1000,
            10,
            "edge, 1,000 connections x 10 streams = 10,000 in flight",
            paced=False,
            warmup=0,
            baseline="null-inflight-10k",
        ),
    ]


_COLD_IDS: list[str] = []


def _keyed_counted(sc: Scenario, ctx: Context) -> dict[str, Any]:
    result = keyed_load.run(sc, ctx)
    result["problems"].extend(_count_back_fake(result))
    return result


def _run_cold_get(sc: Scenario, ctx: Context) -> dict[str, Any]:
    return cold_get.run(sc, ctx, _COLD_IDS)


def read_emf_counts(log_text: str, method: str) -> dict[str, int] | None:
    """Sum `Requests` by `Code` over the EMF documents of `method` in a log; None if the
    log holds no request counts at all (the edge did not flush them)."""
    found = False
    counts: dict[str, int] = {}
    for line in log_text.splitlines():
        if not line.startswith("{") or '"Requests"' not in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if "_aws" not in doc or "Code" not in doc or "Requests" not in doc:
            continue
        found = True
        if str(doc.get("Method", "")).rsplit("/", 1)[-1] != method:
            continue
        counts[str(doc["Code"])] = counts.get(str(doc["Code"]), 0) + int(doc["Requests"])
    return counts if found else None


class EdgeServer(ServerProcess):
    name = "edge"

    def __init__(
        self, *, work_dir: Path, cpus: set[int] | None, workers: int, env: dict[str, str]
    ) -> None:
        super().__init__(work_dir=work_dir, cpus=cpus, workers=workers)
        self.env = env

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "grpc_edge",
            "--workers",
            str(self.workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--drain-delay",
            "0",
        ]

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env, ENV.EDGE_PORT: str(self.port)}

    def ready_lines(self) -> int:
        return 1

    counters_unavailable = (
        "the edge's log holds no EMF `Requests` documents by Method/Code (grpc_edge.metrics "
        "must flush on shutdown)"
    )

    def status_counts(self, method: str) -> dict[str, int] | None:
        return read_emf_counts(self.log_path.read_text(errors="replace"), method)


class NaiveEdgeServer(EdgeServer):
    """The same edge with its naive producer (REPORTGRID_EDGE_PRODUCER=naive): one
    PutRecords call per SubmitReport, what a service without batching does."""

    name = "edge-naive"

    def environ(self) -> dict[str, str]:
        return {**super().environ(), ENV.EDGE_PRODUCER: "naive"}


@dataclass
class KinesisCounter:
    """Reads the task stream forward from where it last stopped."""

    kinesis: Any
    stream: str
    iterators: dict[str, str] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)

    def start(self) -> None:
        shards = self.kinesis.list_shards(StreamName=self.stream)["Shards"]
        for shard in shards:
            self.iterators[shard["ShardId"]] = self.kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]

    def read_new(self) -> tuple[int, int, int]:
        """(records, distinct new report ids, undecodable records) since the last call."""
        count = undecodable = 0
        new_ids: set[str] = set()
        for shard, first in list(self.iterators.items()):
            iterator = first
            while True:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                iterator = page["NextShardIterator"]
                for rec in page["Records"]:
                    count += 1
                    try:
                        task = tasks.decode(rec["Data"])
                    except tasks.UndecodableTask:
                        undecodable += 1
                        continue
                    if task.report_id not in self.seen_ids:
                        new_ids.add(task.report_id)
                if not page["Records"]:
                    break
            self.iterators[shard] = iterator
        self.seen_ids |= new_ids
        return count, len(new_ids), undecodable


@dataclass
class LocalRegion:
    moto: MotoServer
    redis: RedisServer
    resources: RegionResources
    counter: KinesisCounter
    fakes: list[FakeKinesisProcess] = field(default_factory=list)


_REGION: LocalRegion | None = None


def prepare(ctx: Context, chosen: Sequence[Scenario], hot: records.ReportRecord) -> list[str]:
    """Start the local region, seed it, and register the edge servers with the context."""
    global _REGION  # noqa: PLW0603 -- one region per bench run, torn down in teardown()
    if importlib.util.find_spec("grpc_edge.server") is None:
        return ["edge scenarios skipped: grpc_edge.server does not exist yet"]
    moto = MotoServer(None, ctx.work_dir / "moto.log").start()
    redis = RedisServer(None, ctx.work_dir / "redis.log").start()
    if ctx.cpus.load:
        for proc in (moto.process, redis.process):
            assert proc is not None
            procstat.pin_tree(proc.pid, ctx.cpus.load)
    region = create_region(payloads.REGION, moto.endpoint_url, shards=2)
    ddb = client("dynamodb", payloads.REGION, moto.endpoint_url)
    key = apikeys.generate_key()
    apikeys.put_key(ddb, region.table_name, key, payloads.TENANT, name="bench")
    ddb.put_item(TableName=region.table_name, Item=records.to_item(hot))
    for sc in chosen:
        if sc.runner is _run_cold_get:
            _COLD_IDS[:] = cold_get.seed(moto.endpoint_url, region.table_name, sc.requests)
    ctx.api_key = key
    counter = KinesisCounter(
        client("kinesis", payloads.REGION, moto.endpoint_url), region.stream_name
    )
    counter.start()
    _REGION = LocalRegion(moto, redis, region, counter)
    env = {
        **region.environ(),
        ENV.REDIS_URL: redis.url,
        ENV.ID_SECRETS: payloads.ID_SECRET,
        **BENCH_EDGE_ENV,
    }
    requests = {SUBMIT: payloads.submit_request(), GET: payloads.get_request(hot.report_id)}
    kinds: list[tuple[str, type[EdgeServer], dict[str, str]]] = [
        ("edge", EdgeServer, env),
        ("edge-naive", NaiveEdgeServer, env),
    ]
    wanted = {sc.server for sc in chosen}
    for kind, close in (("edge-fastkinesis", False), ("edge-fastkinesis-close", True)):
        if kind in wanted:
            fake = FakeKinesisProcess(
                moto.endpoint_url, ctx.work_dir / f"{kind}.log", close=close, port=free_port()
            ).start()
            assert fake.process is not None
            if ctx.cpus.load:
                procstat.pin_tree(fake.process.pid, ctx.cpus.load)
            _REGION.fakes.append(fake)
            _FAKES[kind] = fake
            kinds.append((kind, EdgeServer, {**env, ENV.AWS_ENDPOINT_URL: fake.endpoint_url}))
    for kind, cls, kind_env in kinds:
        ctx.servers[kind] = functools.partial(
            cls, work_dir=ctx.work_dir, cpus=ctx.cpus.server, workers=1, env=kind_env
        )
        ctx.requests[kind] = requests
    for sc in chosen:
        if sc.method == SUBMIT and sc.runner is None:
            ctx.after[sc.name] = _count_back_fake if sc.server in _FAKES else _count_back
    return [
        "edge scenarios: moto server and redis-server pinned with h2load; edge settings for "
        "the bench: " + ", ".join(f"{k}={v}" for k, v in BENCH_EDGE_ENV.items()),
    ]


_FAKES: dict[str, FakeKinesisProcess] = {}


def _count_back_fake(result: dict[str, Any]) -> list[str]:
    """The same check against the records the fake Kinesis accepted."""
    fake = _FAKES.get(result["server"])
    if fake is None:  # the null server's keyed row: nothing to count
        return []
    found = undecodable = 0
    ids: set[str] = set()
    for data in fake.take_records():
        found += 1
        try:
            ids.add(tasks.decode(data).report_id)
        except tasks.UndecodableTask:
            undecodable += 1
    return _compare(result, found, len(ids), undecodable)


def _count_back(result: dict[str, Any]) -> list[str]:
    """Compare the submits the edge acknowledged with the tasks found in Kinesis."""
    assert _REGION is not None
    return _compare(result, *_REGION.counter.read_new())


def _compare(result: dict[str, Any], found: int, distinct: int, undecodable: int) -> list[str]:
    acked = result["replies_ok"]
    result["kinesis"] = {
        "records": found,
        "distinct_report_ids": distinct,
        "undecodable": undecodable,
        "acked": acked,
        "acked_but_missing": max(0, acked - distinct),
    }
    problems = []
    if acked > distinct:
        problems.append(f"{acked - distinct} acknowledged submits have no task in Kinesis")
    if undecodable:
        problems.append(f"{undecodable} undecodable records in the task stream")
    return problems


def teardown(ctx: Context) -> None:
    global _REGION  # noqa: PLW0603
    if _REGION is not None:
        for fake in _REGION.fakes:
            fake.stop()
        _FAKES.clear()
        _REGION.redis.stop()
        _REGION.moto.stop()
        _REGION = None
