"""`reportgrid-drill region-loss`: lose a region under load and measure what users see.

Two local regions (reportgrid.local.dev.MultiRegionSupervisor) start with short leases and
grace. The drill then
1. measures Submit latency against region A with regional and with multi-region durability;
2. submits a steady stream of reports to region A through the SDK (both endpoints, A
   first), and part-way through SIGKILLs every process of region A;
3. keeps submitting (the SDK fails over to B), then waits until every acknowledged report
   is terminal (region B's standby runs what A did not finish, from the mirrored tasks);
4. restarts region A and waits until its backlog (the task-log records it had not
   processed, the mirror's too) is worked off and both regions' tables agree.

"Produced twice" is counted from both tables' change streams: a report whose terminal item
was written by two different workers (lease owners) ran twice to completion. The drill also
counts what a user could see twice: distinct result contents per report (both results
buckets, every version) and distinct terminal states.

Its verdict is the guarantee that holds under the conditions it measured, not a constant
(docs/MULTI_REGION.md "What is guaranteed"): the replicator records the lag every item
actually got, and
- with the lease arbiter (an MRSC table; locally a table every region shares): exactly
  once, whatever the lag;
- without it, exactly once only when the largest lag measured is at most margin / 2 (the
  standby's margin covers a round trip of replication); above that, at most the reports
  the standby claimed can run twice, and each still ends with one state and one result.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from reportgrid import resources
from reportgrid.client import ReportClient
from reportgrid.local.bootstrap import LOCAL_ACCOUNT, client
from reportgrid.local.dev import DevError, DevOptions, MultiRegionSupervisor
from reportgrid.local.event_sources import checkpoint_dir
from reportgrid.local.kinesis_runner import CHECKPOINT_FILE
from reportgrid.local.replicator import LagSummary
from reportgrid.local.servers import PortInUse, ServerError, free_port, port_is_free
from reportgrid.v1 import reports_pb2 as pb

DEFAULT_REGIONS: Final = ("us-east-1", "eu-west-1")
KIND: Final = "synthetic"
_TERMINAL: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
# The edges' ports are picked free and bound later by the edge processes: another process
# can take one in between. Starting again on new ports is the cure.
START_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class DrillOptions:
    regions: tuple[str, str] = DEFAULT_REGIONS
    edge_port: int = 0  # 0: any two adjacent free ports
    state_dir: Path | None = None
    rate_per_second: float = 5.0
    before_kill_seconds: float = 5.0
    after_kill_seconds: float = 8.0
    durability: pb.Durability.ValueType = pb.DURABILITY_MULTI_REGION
    latency_samples: int = 100
    lease_seconds: int = 3
    grace_seconds: int = 2
    margin_seconds: float = 1.0
    replication_lag_seconds: float = 0.2
    report_cpu_ms: int = 300  # slower than one stream worker at 5/s: A has work in flight
    settle_timeout_seconds: float = 60.0
    # Claims and leases on the lease arbiter (an MRSC table in AWS, locally one item store
    # for every region): exactly once whatever the lag. Needs regions of one MRSC set.
    arbiter: bool = False


@dataclass
class Submission:
    started: float  # time.monotonic()
    ended: float
    endpoint: str
    report_id: str = ""
    error: str = ""


@dataclass
class DrillFigures:
    submitted: int = 0
    acknowledged: int = 0
    acknowledged_by_region: dict[str, int] = field(default_factory=dict)
    failed_submits: int = 0
    completed: int = 0
    not_terminal: int = 0
    ran_in: dict[str, int] = field(default_factory=dict)
    # Acknowledged by region A, run to the end by region B (from the mirrored tasks).
    taken_over: int = 0
    produced_twice: int = 0
    recovery_seconds: float = 0.0
    longest_submit_seconds: float = 0.0
    all_terminal_seconds: float = 0.0
    backlog_records: int = 0
    backlog_reconciled: bool = False
    tables_agree: bool = False
    produced_twice_after_restart: int = 0
    # Report id -> the workers that completed it, for every report completed twice.
    twice: dict[str, list[str]] = field(default_factory=dict)
    submit_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    # What the run measured and what it therefore promises.
    margin_seconds: float = 0.0
    arbiter: bool = False
    lag: LagSummary = field(default_factory=LagSummary)
    # Reports some standby claimed (wrote RUNNING): the only ones a takeover can run twice.
    standby_claimed: int = 0
    # Reports run twice that no standby claimed: the bound's premise broken.
    twice_unclaimed: int = 0
    # What a user sees: reports with more than one distinct result (the digests their
    # terminal writes carried; S3 objects in both buckets, every version) or more than one
    # terminal state across the two tables.
    results_differing: int = 0
    result_versions: int = 0
    states_differing: int = 0

    @property
    def exactly_once(self) -> bool:
        """Whether the design promises no double run under the measured conditions."""
        return self.arbiter or self.lag.max <= self.margin_seconds / 2

    @property
    def twice_bound(self) -> int:
        """The most reports the promise allows to run twice."""
        return 0 if self.exactly_once else self.standby_claimed

    def guarantee(self) -> str:
        if self.arbiter:
            return "exactly once (lease arbiter: linearizable claims, any lag)"
        if self.exactly_once:
            return (
                f"exactly once (largest lag {self.lag.max:.2f} s <= margin/2 "
                f"{self.margin_seconds / 2:.2f} s)"
            )
        return (
            f"at least once, at most {self.standby_claimed} run twice, one visible outcome "
            f"(largest lag {self.lag.max:.2f} s > margin/2 {self.margin_seconds / 2:.2f} s)"
        )

    @property
    def passed(self) -> bool:
        return (
            self.acknowledged > 0
            and self.completed == self.acknowledged
            and self.produced_twice_after_restart <= self.twice_bound
            and self.twice_unclaimed == 0
            and self.results_differing == 0
            and self.states_differing == 0
            and self.backlog_reconciled
            and self.tables_agree
        )

    def lines(self) -> list[str]:
        latency = "; ".join(
            f"{name}: p50 {v['p50']:.1f} ms, p99 {v['p99']:.1f} ms"
            for name, v in self.submit_ms.items()
        )
        return [
            f"submit latency (region A, local): {latency}",
            f"submitted {self.submitted}, acknowledged {self.acknowledged} "
            f"{self.acknowledged_by_region}, failed {self.failed_submits}",
            f"acknowledged reports completed: {self.completed}/{self.acknowledged} "
            f"(ran in {self.ran_in}; {self.taken_over} of A's taken over by B from the "
            f"mirror); not terminal: {self.not_terminal}",
            f"replication lag measured: p50 {self.lag.p50:.2f} s, p99 {self.lag.p99:.2f} s, "
            f"max {self.lag.max:.2f} s over {self.lag.items} item writes; margin "
            f"{self.margin_seconds:.2f} s; lease arbiter {'on' if self.arbiter else 'off'}",
            f"guarantee under these conditions: {self.guarantee()}",
            f"results produced twice: {self.produced_twice} (standby claimed "
            f"{self.standby_claimed}; allowed {self.twice_bound}; run twice but never "
            f"standby-claimed {self.twice_unclaimed})",
            f"client-visible recovery (kill -> first success through B): "
            f"{self.recovery_seconds:.2f} s; longest submit {self.longest_submit_seconds:.2f} s",
            f"every acknowledged report terminal: {self.all_terminal_seconds:.2f} s after the kill",
            f"region A back: backlog of {self.backlog_records} task-log records "
            f"{'reconciled' if self.backlog_reconciled else 'NOT reconciled'}; tables "
            f"{'agree' if self.tables_agree else 'DISAGREE'}; produced twice after restart: "
            f"{self.produced_twice_after_restart}",
            f"visible outcomes: reports with differing results {self.results_differing} "
            f"({self.result_versions} result versions written), with differing terminal "
            f"states {self.states_differing}",
            "PASSED" if self.passed else "FAILED",
        ]


def free_port_pair() -> int:
    """A free port whose successor is free too (the two edges)."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise DevError("found no two adjacent free ports for the edges")


def _port_trouble(error: Exception) -> bool:
    """A start that failed on a port: taken before we started, or an edge that exited
    (it exits when it cannot bind)."""
    return isinstance(error, PortInUse) or str(error).startswith("edge-")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- what the tables and streams say --------------------------------------------------------


def _stream_records(endpoint: str, region: str) -> Iterator[dict[str, Any]]:
    """Every change record of the region's table, from the start."""
    ddb = client("dynamodb", region, endpoint)
    streams = client("dynamodbstreams", region, endpoint)
    arn = ddb.describe_table(TableName=resources.TABLE_NAME)["Table"]["LatestStreamArn"]
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            yield from page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")


@dataclass
class Writes:
    """Per report, from both tables' change streams (a replicated copy carries its
    writer's owner, so one write counts once)."""

    # The workers (lease owners) that wrote it terminal, and the states they wrote.
    finishers: dict[str, set[str]] = field(default_factory=dict)
    terminal_states: dict[str, set[str]] = field(default_factory=dict)
    # The result digests its terminal writes carried (inline or S3 results alike).
    result_digests: dict[str, set[str]] = field(default_factory=dict)
    # Reports a standby worker wrote RUNNING (claimed).
    standby_claimed: set[str] = field(default_factory=set)

    def twice(self) -> dict[str, list[str]]:
        return {r: sorted(o) for r, o in self.finishers.items() if len(o) > 1}


def table_writes(endpoint: str, regions: tuple[str, ...]) -> Writes:
    writes = Writes()
    for region in regions:
        for record in _stream_records(endpoint, region):
            image = record.get("dynamodb", {}).get("NewImage") or {}
            state = image.get("state", {}).get("S")
            if state is None or "report_id" not in image:
                continue
            rid = image["report_id"]["S"]
            owner = image.get("lease_owner", {}).get("S", "?")
            if state in _TERMINAL:
                writes.finishers.setdefault(rid, set()).add(owner)
                writes.terminal_states.setdefault(rid, set()).add(state)
                digest = image.get("result_sha256", {}).get("S")
                if digest:
                    writes.result_digests.setdefault(rid, set()).add(digest)
            elif state == "RUNNING" and owner.startswith("standby:"):
                writes.standby_claimed.add(rid)
    return writes


def completions(endpoint: str, regions: tuple[str, ...]) -> dict[str, set[str]]:
    """Per report, the workers (lease owners) that wrote it terminal, in any region."""
    return table_writes(endpoint, regions).finishers


def result_contents(
    endpoint: str, regions: tuple[str, ...], ids: list[str]
) -> dict[str, list[str]]:
    """Per report, the ETags (contents) of every version of its result object in every
    region's results bucket. Results are kept under one key per report, so a double run
    leaves versions there; one content means the user sees one result."""
    contents: dict[str, list[str]] = {}
    by_key = {resources.result_object_key(rid): rid for rid in ids}
    for region in regions:
        s3 = client("s3", region, endpoint)
        bucket = resources.results_bucket_name(LOCAL_ACCOUNT, region)
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for version in page.get("Versions", []):
                rid = by_key.get(version["Key"])
                if rid is not None:
                    contents.setdefault(rid, []).append(version.get("ETag", ""))
    return contents


def table_states(endpoint: str, region: str, ids: list[str]) -> dict[str, dict[str, str]]:
    ddb = client("dynamodb", region, endpoint)
    found: dict[str, dict[str, str]] = {}
    for start in range(0, len(ids), 100):
        keys = [
            {resources.PARTITION_KEY: {"S": resources.REPORT_PREFIX + i}}
            for i in ids[start : start + 100]
        ]
        request: dict[str, Any] = {resources.TABLE_NAME: {"Keys": keys, "ConsistentRead": True}}
        while request:
            reply = ddb.batch_get_item(RequestItems=request)
            for item in reply["Responses"].get(resources.TABLE_NAME, []):
                found[item["report_id"]["S"]] = {
                    "state": item.get("state", {}).get("S", ""),
                    "region": item.get("region", {}).get("S", ""),
                    "owner": item.get("lease_owner", {}).get("S", ""),
                }
            request = reply.get("UnprocessedKeys") or {}
    return found


def stream_tail(endpoint: str, region: str) -> dict[str, int]:
    """The last sequence number of each shard of the region's task stream."""
    kinesis = client("kinesis", region, endpoint)
    tail: dict[str, int] = {}
    for shard in kinesis.list_shards(StreamName=resources.TASK_STREAM_NAME)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=resources.TASK_STREAM_NAME,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                tail[shard["ShardId"]] = int(record["SequenceNumber"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return tail


def checkpoints(directory: Path) -> dict[str, int]:
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    return {shard: int(seq) for shard, seq in saved.get("shards", {}).items()}


def behind(tail: dict[str, int], done: dict[str, int]) -> bool:
    return any(done.get(shard, -1) < seq for shard, seq in tail.items())


def count_after(endpoint: str, region: str, done: dict[str, int]) -> int:
    """Records of the region's task stream past the given checkpoints."""
    kinesis = client("kinesis", region, endpoint)
    count = 0
    for shard in kinesis.list_shards(StreamName=resources.TASK_STREAM_NAME)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=resources.TASK_STREAM_NAME,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            count += sum(
                int(r["SequenceNumber"]) > done.get(shard["ShardId"], -1) for r in page["Records"]
            )
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return count


def wait_until(check: Callable[[], bool], timeout: float, poll: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(poll)
    return check()


# -- the drill ---------------------------------------------------------------------------


class RegionLossDrill:
    def __init__(self, options: DrillOptions, console: IO[str]) -> None:
        self.options = options
        self.console = console
        self.figures = DrillFigures()

    def say(self, text: str) -> None:
        self.console.write(text + "\n")
        self.console.flush()

    def run(self) -> DrillFigures:
        opts = self.options
        # The supervisor's console: the drill prints its own summary; the children's logs
        # are in the state directory.
        with (
            tempfile.TemporaryDirectory(prefix="reportgrid-drill-") as scratch,
            open(os.devnull, "w") as quiet,
        ):
            state_dir = opts.state_dir or Path(scratch)
            self.figures.margin_seconds = opts.margin_seconds
            self.figures.arbiter = opts.arbiter
            for attempt in range(1, START_ATTEMPTS + 1):
                supervisor = self._supervisor(state_dir / f"run-{attempt}", quiet)
                try:
                    self.say(f"starting regions {', '.join(opts.regions)} ...")
                    try:
                        supervisor.start()
                    except (DevError, ServerError) as error:
                        # Only ports we picked may be taken by someone else meanwhile, and
                        # only a port is worth another try (not a failed synth).
                        if opts.edge_port or attempt == START_ATTEMPTS or not _port_trouble(error):
                            raise
                        self.say(f"start failed ({error}); again on new ports")
                        continue
                    self._drill(supervisor)
                    return self.figures
                finally:
                    supervisor.shutdown(3.0)
        return self.figures

    def _supervisor(self, state_dir: Path, console: IO[str]) -> MultiRegionSupervisor:
        opts = self.options
        env = resources.ENV
        return MultiRegionSupervisor(
            DevOptions(
                edge_port=opts.edge_port or free_port_pair(),
                state_dir=state_dir,
                regions=opts.regions,
                replication_lag_seconds=opts.replication_lag_seconds,
                lease_arbiter=opts.arbiter,
                stop_grace_seconds=3.0,
                extra_env=(
                    (env.WORKER_LEASE_SECONDS, str(opts.lease_seconds)),
                    (env.MIRROR_GRACE_SECONDS, str(opts.grace_seconds)),
                    (env.STANDBY_MARGIN_SECONDS, str(opts.margin_seconds)),
                    (env.QUEUE_WAIT_SECONDS, "1"),
                    (env.LOG_LEVEL, "INFO"),
                ),
            ),
            console=console,
        )

    def _drill(self, sup: MultiRegionSupervisor) -> None:
        opts = self.options
        home = opts.regions[0]
        stream_dir = checkpoint_dir(sup.state.kinesis / home, resources.SERVICE_STREAM_WORKER)
        self._measure_latency(sup.runs[home].endpoint, sup.api_key)
        # Start the loss from a region that keeps up: the timed submits left a backlog.
        endpoint = sup.moto.endpoint_url if sup.moto else ""
        tail = stream_tail(endpoint, home)
        wait_until(
            lambda: not behind(tail, checkpoints(stream_dir)),
            opts.settle_timeout_seconds,
        )

        self.say(f"submitting to {home} at {opts.rate_per_second:.0f}/s ...")
        submissions: list[Submission] = []
        stop = threading.Event()
        submitter = threading.Thread(
            target=self._submit_steadily, args=(sup, submissions, stop), daemon=True
        )
        submitter.start()
        time.sleep(opts.before_kill_seconds)
        done_at_kill = checkpoints(stream_dir)
        killed = time.monotonic()
        sup.kill_region(home)
        self.say(f"SIGKILLed every process of {home}")
        time.sleep(opts.after_kill_seconds)
        stop.set()
        submitter.join()
        ids = self._tally(sup, submissions, killed)
        self._reconcile(sup, ids, done_at_kill)

    def _tally(
        self, sup: MultiRegionSupervisor, submissions: list[Submission], killed: float
    ) -> list[str]:
        """Figures of the loss: what was acknowledged, and how it ended in region B."""
        opts = self.options
        home, peer = opts.regions
        endpoint = sup.moto.endpoint_url if sup.moto else ""
        a, b = sup.runs[home], sup.runs[peer]
        f = self.figures
        acked = [s for s in submissions if s.report_id]
        ids = sorted({s.report_id for s in acked})
        f.submitted = len(submissions)
        f.acknowledged = len(ids)
        f.failed_submits = sum(1 for s in submissions if s.error)
        for s in acked:
            name = home if s.endpoint == a.endpoint else peer
            f.acknowledged_by_region[name] = f.acknowledged_by_region.get(name, 0) + 1
        first_b = min(
            (s.ended for s in acked if s.endpoint == b.endpoint and s.started >= killed - 30),
            default=None,
        )
        f.recovery_seconds = (first_b - killed) if first_b is not None else float("nan")
        around = [s.ended - s.started for s in submissions]
        f.longest_submit_seconds = max(around, default=0.0)

        self.say(f"waiting until the {len(ids)} acknowledged reports are terminal in {peer} ...")

        def all_terminal() -> bool:
            states = table_states(endpoint, peer, ids)
            return all(states.get(i, {}).get("state") in _TERMINAL for i in ids)

        wait_until(all_terminal, opts.settle_timeout_seconds)
        f.all_terminal_seconds = time.monotonic() - killed
        states = table_states(endpoint, peer, ids)
        f.completed = sum(1 for i in ids if states.get(i, {}).get("state") == "SUCCEEDED")
        f.not_terminal = sum(1 for i in ids if states.get(i, {}).get("state") not in _TERMINAL)
        for i in ids:
            ran = states.get(i, {}).get("region", "")
            if ran:
                f.ran_in[ran] = f.ran_in.get(ran, 0) + 1
        from_a = {s.report_id for s in acked if s.endpoint == a.endpoint}
        f.taken_over = sum(1 for i in from_a if states.get(i, {}).get("region") == peer)
        f.produced_twice = len(table_writes(endpoint, opts.regions).twice())
        return ids

    def _reconcile(
        self, sup: MultiRegionSupervisor, ids: list[str], done_at_kill: dict[str, int]
    ) -> None:
        """Bring region A back and check its backlog changes nothing that B finished."""
        opts = self.options
        home, peer = opts.regions
        endpoint = sup.moto.endpoint_url if sup.moto else ""
        f = self.figures
        tail = stream_tail(endpoint, home)
        f.backlog_records = count_after(endpoint, home, done_at_kill)
        self.say(f"restarting {home} (backlog: {f.backlog_records} task-log records) ...")
        sup.restart_region(home)
        stream_dir = checkpoint_dir(sup.state.kinesis / home, resources.SERVICE_STREAM_WORKER)
        mirror_dir = checkpoint_dir(sup.state.kinesis / home, resources.SERVICE_MIRROR)
        f.backlog_reconciled = wait_until(
            lambda: (
                not behind(tail, checkpoints(stream_dir))
                and not behind(tail, checkpoints(mirror_dir))
            ),
            opts.settle_timeout_seconds,
        )
        if sup.replicator is not None:
            sup.replicator.drain()

        def agree() -> bool:
            there, here = table_states(endpoint, home, ids), table_states(endpoint, peer, ids)
            return all(
                there.get(i) == here.get(i) and here.get(i, {}).get("state") in _TERMINAL
                for i in ids
            )

        f.tables_agree = wait_until(agree, 15.0)
        writes = table_writes(endpoint, opts.regions)
        f.twice = writes.twice()
        f.produced_twice_after_restart = len(f.twice)
        f.standby_claimed = len(writes.standby_claimed & set(ids))
        f.twice_unclaimed = len(set(f.twice) - writes.standby_claimed)
        f.states_differing = sum(1 for i in ids if len(writes.terminal_states.get(i, ())) > 1)
        contents = result_contents(endpoint, opts.regions, ids)
        f.results_differing = sum(
            1
            for i in ids
            if len(set(contents.get(i, ()))) > 1 or len(writes.result_digests.get(i, ())) > 1
        )
        f.result_versions = sum(len(c) for c in contents.values())
        if sup.replicator is not None:
            f.lag = sup.replicator.stats.lag_summary()

    def _measure_latency(self, endpoint: str, api_key: str) -> None:
        opts = self.options
        if opts.latency_samples <= 0:
            return
        self.say(f"measuring Submit latency ({opts.latency_samples} each) ...")
        with ReportClient(endpoint, api_key=api_key, timeout=10) as sdk:
            for name, durability in (
                ("regional", pb.DURABILITY_REGIONAL),
                ("multi-region", pb.DURABILITY_MULTI_REGION),
            ):
                samples: list[float] = []
                sdk.submit(KIND, {"output_rows": 1}, durability=durability)  # warm up
                for seed in range(opts.latency_samples):
                    started = time.perf_counter()
                    sdk.submit(KIND, {"output_rows": 1, "seed": seed}, durability=durability)
                    samples.append((time.perf_counter() - started) * 1000)
                self.figures.submit_ms[name] = {
                    "p50": statistics.median(samples),
                    "p99": percentile(samples, 0.99),
                }

    def _submit_steadily(
        self, sup: MultiRegionSupervisor, out: list[Submission], stop: threading.Event
    ) -> None:
        opts = self.options
        interval = 1.0 / opts.rate_per_second
        with ReportClient(sup.endpoints(), api_key=sup.api_key, timeout=10) as sdk:
            seed = 0
            next_at = time.monotonic()
            while not stop.is_set():
                seed += 1
                started = time.monotonic()
                entry = Submission(started, started, sdk.endpoint)
                try:
                    reply = sdk.submit(
                        KIND,
                        {"output_rows": 20, "seed": seed, "cpu_ms": opts.report_cpu_ms},
                        durability=opts.durability,
                    )
                    entry.report_id = reply.report_id
                except Exception as err:  # every failure is a data point, not an end
                    entry.error = type(err).__name__
                entry.ended = time.monotonic()
                entry.endpoint = sdk.endpoint
                out.append(entry)
                next_at += interval
                stop.wait(max(0.0, next_at - time.monotonic()))


def run_region_loss(options: DrillOptions, console: IO[str]) -> DrillFigures:
    figures = RegionLossDrill(options, console).run()
    for line in figures.lines():
        console.write(line + "\n")
    return figures


def figures_json(figures: DrillFigures) -> str:
    return json.dumps({**asdict(figures), "passed": figures.passed}, indent=2, default=str)
