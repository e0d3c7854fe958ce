"""`reportgrid-dev`: a whole region on this machine, in the foreground.

Starts, in order: the moto server and redis-server (reportgrid.local.servers), the region's
resources (reportgrid.local.bootstrap.create_region, the same names as the CDK stacks), a
development API key, then the edge (`python -m grpc_edge`), the local Kinesis event source
feeding the real Lambda handler (reportgrid.local.kinesis_runner), the queue worker
(`python -m functions.queue_worker`) and the drain of batches the Kinesis runner gave up on
(`python -m reportgrid.local.stream_failure_drain`). Their output is shown with a name
prefix and kept in <state>/logs/<name>.log.

Ctrl-C (or SIGTERM) stops everything: SIGTERM to each child's process group, SIGKILL to
whatever is left after a grace period, then the servers. A second Ctrl-C skips the grace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import grpc
from grpc_health.v1 import health_pb2

from reportgrid import apikeys, resources
from reportgrid.local.bootstrap import RegionResources, client, create_region, local_input_bucket
from reportgrid.local.deployed import DEFAULT_PEER, DeploymentError, synthesize
from reportgrid.local.launch import LOCAL_OVERRIDES, LocalDeployment, Process, build_images, prepare
from reportgrid.local.replicator import GlobalTableReplicator
from reportgrid.local.servers import (
    LOOPBACK,
    MotoServer,
    PortInUse,
    RedisServer,
    ServerError,
    port_is_free,
)
from reportgrid.local.state import StateDir, restore_snapshot, save_snapshot

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

DEV_TENANT: Final = "dev"
READY_TIMEOUT_SECONDS: Final = 90.0
STOP_GRACE_SECONDS: Final = 10.0
# The edge drains for this long on SIGTERM; short, so Ctrl-C is quick on a laptop.
DEV_DRAIN_GRACE_SECONDS: Final = 2.0
PREFIX_WIDTH: Final = 7
_EMF_MARK: Final = '{"_aws":'
_COLOURS: Final = {"edge": 36, "lambda": 35, "queue": 33, "standby": 31}

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


@dataclass(frozen=True, slots=True)
class DevOptions:
    edge_port: int = resources.EDGE_PORT
    edge_workers: int = 1
    moto_port: int = 0
    redis_port: int = 0
    state_dir: Path = Path(".reportgrid")
    persist: bool = False
    region: str = "us-east-1"
    shards: int = 2
    stop_grace_seconds: float = STOP_GRACE_SECONDS
    # Two regions (`--regions a,b`): each its own edge (on edge_port + its index), stream,
    # queues, workers, standby and Redis, on one moto server, with the table replicator.
    regions: tuple[str, ...] = ()
    replication_lag_seconds: float = 0.0
    # Extra settings for every process (the drill shortens leases and the grace).
    extra_env: tuple[tuple[str, str], ...] = ()
    # Claims on the lease arbiter (`--lease-arbiter`): the stack synthesized with
    # reportgrid:leaseArbiter, its table one item store in every region (moto_main
    # --shared-table: the local MRSC table). Needs regions of one MRSC set.
    lease_arbiter: bool = False


class DevError(Exception):
    """The local region cannot start; the message says why and what to do."""


@dataclass
class Child:
    """One of our child processes, its output pumped to the console with a prefix."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None
    lines: list[str] = field(default_factory=list)  # the last few, for error messages


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the supervisor itself dies (Linux), so
    even a killed supervisor leaves no orphans. A no-op elsewhere."""
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        pr_set_pdeathsig = 1
        ctypes.CDLL(libc_name).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _prefix(name: str, tty: bool) -> str:
    label = f"{name:<{PREFIX_WIDTH}}|"
    return f"\033[{_COLOURS.get(name, 37)}m{label}\033[0m " if tty else label + " "


def _pump(child: Child, source: IO[bytes], log_path: Path, console: IO[str]) -> None:
    prefix = _prefix(child.name, console.isatty())
    with log_path.open("ab") as log:
        for raw in iter(source.readline, b""):
            log.write(raw)
            log.flush()
            line = raw.decode(errors="replace").rstrip()
            if line.startswith(_EMF_MARK):
                continue  # metrics (CloudWatch EMF) stay in the log file, off the console
            child.lines = [*child.lines[-9:], line]
            console.write(prefix + line + "\n")
            console.flush()


def port_taken(port: int) -> bool:
    """Whether something holds the port. Connections of a just-stopped edge linger in
    TIME_WAIT and fail a plain bind, yet the edge (SO_REUSEPORT) can bind; so a port
    counts as taken only if something listens on it or even a SO_REUSEPORT bind fails."""
    if port_is_free(port):
        return False
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        return True  # someone is listening
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


class Supervisor:
    """Owns every process of the local region and the order they start and stop in."""

    def __init__(self, options: DevOptions, console: IO[str] = sys.stdout) -> None:
        self.options = options
        self.console = console
        self.state = StateDir(options.state_dir)
        self.moto: MotoServer | None = None
        self.redis: RedisServer | None = None
        self.region: RegionResources | None = None
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self.force = threading.Event()  # a second Ctrl-C: no more grace
        self.api_key = ""

    def say(self, text: str) -> None:
        self.console.write(text + "\n")
        self.console.flush()

    # -- start -----------------------------------------------------------------------------

    def check_ports(self) -> None:
        wanted = [("--port (the edge)", self.options.edge_port)]
        if self.options.moto_port:
            wanted.append(("--moto-port", self.options.moto_port))
        if self.options.redis_port:
            wanted.append(("--redis-port", self.options.redis_port))
        ports = [p for _, p in wanted]
        if len(set(ports)) != len(ports):
            raise DevError(f"ports must differ: {', '.join(f'{n}={p}' for n, p in wanted)}")
        for name, port in wanted:
            if port_taken(port):
                raise PortInUse(
                    f"port {port} ({name}) is already in use; stop what holds it "
                    f"or choose another with {name.split()[0]}"
                )

    def start_servers(self) -> None:
        opts = self.options
        logs = self.state.logs
        self.moto = MotoServer(opts.moto_port or None, logs / "moto.log").start()
        self.say(f"started moto server on {self.moto.endpoint_url}")
        self.redis = RedisServer(
            opts.redis_port or None,
            logs / "redis.log",
            data_dir=self.state.redis if opts.persist else None,
        ).start()
        self.say(f"started redis-server on {self.redis.url}")

    def bootstrap(self) -> dict[str, str]:
        """Create the resources, restore a snapshot, seed the API key; the children's env."""
        assert self.moto is not None
        assert self.redis is not None
        opts = self.options
        self.region = create_region(opts.region, self.moto.endpoint_url, shards=opts.shards)
        # The stack names the peer's standby queue and results bucket: they exist, idle (no
        # process of the peer runs alone-region), as a deployed peer's would.
        create_region(DEFAULT_PEER.get(opts.region, "us-east-1"), self.moto.endpoint_url, shards=1)
        ddb = client("dynamodb", opts.region, self.moto.endpoint_url)
        if opts.persist:
            items, objects = restore_snapshot(
                self.state.snapshot,
                dynamodb=ddb,
                s3=client("s3", opts.region, self.moto.endpoint_url),
                table=self.region.table_name,
                region=opts.region,
            )
            if items or objects:
                self.say(f"restored {items} table item(s) and {objects} S3 object(s)")
        self.api_key = self.state.api_key(persist=opts.persist)
        apikeys.put_key(ddb, self.region.table_name, self.api_key, DEV_TENANT, name="dev")
        env = resources.ENV
        return {
            **os.environ,
            **self.region.environ(),
            env.REDIS_URL: self.redis.url,
            env.ID_SECRETS: self.state.id_secret(persist=opts.persist),
            env.EDGE_PORT: str(opts.edge_port),
            env.EDGE_WORKERS: str(opts.edge_workers),
            env.DRAIN_GRACE_SECONDS: str(DEV_DRAIN_GRACE_SECONDS),
            env.METRICS_NAMESPACE: resources.METRICS_NAMESPACE,
            env.LOG_LEVEL: os.environ.get(env.LOG_LEVEL, "INFO"),
            # Metrics would print EMF JSON to the console; locally they are noise.
            "POWERTOOLS_METRICS_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        child = Child(name, list(argv))
        process = subprocess.Popen(
            child.argv,
            env={resources.ENV.SERVICE_NAME: f"reportgrid-{name}", **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            preexec_fn=_die_with_parent,  # noqa: PLW1509 -- only prctl, no locks
        )
        child.process = process
        assert process.stdout is not None
        child.pump = threading.Thread(
            target=_pump,
            args=(child, process.stdout, self.state.logs / f"{name}.log", self.console),
            daemon=True,
        )
        child.pump.start()
        self.children.append(child)
        return child

    def deploy(self, env: dict[str, str]) -> LocalDeployment:
        """Synthesize the deployment for this region and tie it to the local resources."""
        assert self.moto is not None
        opts = self.options
        self.say("synthesizing the deployment (cached while its sources do not change) ...")
        try:
            assembly = synthesize((opts.region,))
            images = build_images()
            return prepare(
                assembly,
                opts.region,
                endpoint_url=self.moto.endpoint_url,
                images=images,
                redis_url=env[resources.ENV.REDIS_URL],
                id_secrets=env[resources.ENV.ID_SECRETS],
            )
        except DeploymentError as error:
            raise DevError(str(error)) from None

    def local_overrides(self, edge_port: int) -> dict[str, str]:
        """The few settings that differ from the template here (launch.LOCAL_OVERRIDES)."""
        env = resources.ENV
        overrides = {
            env.EDGE_PORT: str(edge_port),
            env.EDGE_WORKERS: str(self.options.edge_workers),
            env.DRAIN_GRACE_SECONDS: str(DEV_DRAIN_GRACE_SECONDS),
        }
        assert set(overrides) <= set(LOCAL_OVERRIDES)
        return overrides

    def event_sources(
        self,
        deployment: LocalDeployment,
        env: dict[str, str],
        *,
        state: Path,
        with_peer: bool,
    ) -> Process:
        """The region's Lambda functions from their assets, fed by their event sources."""
        assert self.moto is not None
        argv = [
            sys.executable,
            "-m",
            "reportgrid.local.event_sources",
            "--assembly",
            str(deployment.assembly),
            "--region",
            deployment.region,
            "--endpoint-url",
            self.moto.endpoint_url,
            "--state-dir",
            str(state),
            "--log-dir",
            str(self.state.logs / "functions" / deployment.region),
            # The scheduled functions' clock, one for every region (tests set it).
            "--clock-file",
            str(self.state.clock),
        ]
        if not with_peer:
            argv.append("--without-peer")
        for name, value in self.options.extra_env:
            argv += ["--tune", f"{name}={value}"]
        names = resources.ENV
        own = {k: env[k] for k in (names.REDIS_URL, names.ID_SECRETS)}
        return Process(argv, {**own, "PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"})

    def start_workers(self, env: dict[str, str]) -> None:
        deployment = self.deploy(env)
        edge = deployment.container("edge", self.local_overrides(self.options.edge_port))
        self.spawn("edge", edge.argv, edge.env)
        lambdas = self.event_sources(deployment, env, state=self.state.kinesis, with_peer=False)
        self.spawn("lambda", lambdas.argv, lambdas.env)
        queue = deployment.container("worker", dict(self.options.extra_env))
        self.spawn("queue", queue.argv, queue.env)

    def wait_until_serving(self) -> None:
        """Until the edge's health check says SERVING; fail fast if a child exits."""
        self.wait_for_edge(self.options.edge_port, "edge")

    def wait_for_edge(self, port: int, name: str) -> None:
        target = f"{LOOPBACK}:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        with grpc.insecure_channel(target) as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            while time.monotonic() < deadline:
                if self.stop_requested.is_set():
                    raise DevError("stopped before the region was ready")
                self.check_children()
                with contextlib.suppress(grpc.RpcError):
                    reply = check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                time.sleep(0.2)
        raise DevError(
            f"the edge did not serve on {target} within {READY_TIMEOUT_SECONDS:.0f}s; "
            f"see {self.state.logs / (name + '.log')}"
        )

    def check_children(self) -> None:
        for child in self.children:
            assert child.process is not None
            code = child.process.poll()
            if code is not None:
                if child.pump is not None:
                    child.pump.join(1.0)
                last = child.lines[-1] if child.lines else "no output"
                raise DevError(
                    f"{child.name} exited with code {code} ({last}); "
                    f"see {self.state.logs / (child.name + '.log')}"
                )

    def banner(self) -> None:
        opts = self.options
        endpoint = f"{LOOPBACK}:{opts.edge_port}"
        env = resources.ENV
        self.say(
            "\n".join(
                [
                    "",
                    f"Reportgrid local region is ready ({opts.region}).",
                    f"  endpoint: {endpoint}",
                    f"  API key:  {self.api_key}  (tenant {DEV_TENANT!r})",
                    f"  inputs:   s3://{local_input_bucket(opts.region)}/"
                    f"{resources.tenant_input_prefix(DEV_TENANT)}  (for --input-s3)",
                    f"  state:    {opts.state_dir}  (logs in {self.state.logs})"
                    + ("  [persisted]" if opts.persist else ""),
                    "In another terminal:",
                    f"  export {env.CLIENT_ENDPOINT}={endpoint}",
                    f"  export {env.CLIENT_API_KEY}={self.api_key}",
                    "  reportgrid kinds",
                    "  reportgrid submit summary --input sales.csv "
                    "--param 'group_by=[\"region\"]' \\",
                    '    --param \'aggregates=[{"op": "sum", "column": "amount"}]\' '
                    "--wait --out report.csv",
                    "Press Ctrl-C to stop.",
                    "",
                ]
            )
        )

    # -- stop ------------------------------------------------------------------------------

    def stop_children(self, grace: float) -> None:
        """SIGTERM to every child's process group, SIGKILL to what is left after `grace`."""
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while (
            any(p.poll() is None for p in running)
            and time.monotonic() < deadline
            and not self.force.is_set()
        ):
            time.sleep(0.05)
        for child in self.children:
            if child.process is None:
                continue
            # The group may hold grandchildren (the edge's workers) even if the leader ended.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
            if child.pump is not None:
                child.pump.join(2.0)

    def shutdown(self, grace: float) -> None:
        self.stop_children(grace)
        if self.options.persist and self.moto is not None and self.region is not None:
            try:
                items, objects = save_snapshot(
                    self.state.snapshot,
                    dynamodb=client("dynamodb", self.options.region, self.moto.endpoint_url),
                    s3=client("s3", self.options.region, self.moto.endpoint_url),
                    table=self.region.table_name,
                )
                self.say(f"saved {items} table item(s) and {objects} S3 object(s)")
            except Exception as err:  # a failed save must still stop the servers below
                self.say(f"could not save the snapshot: {err}")
        if self.redis is not None:
            self.redis.stop()
        if self.moto is not None:
            self.moto.stop()

    def start(self) -> None:
        """Everything up to the edge SERVING; raises DevError/ServerError."""
        self.check_ports()
        self.state.prepare(persist=self.options.persist)
        self.start_servers()
        env = self.bootstrap()
        self.start_workers(env)
        self.wait_until_serving()

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            if self.stop_requested.is_set():
                self.force.set()
            self.stop_requested.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        code = EXIT_OK
        try:
            self.start()
            self.banner()
            while not self.stop_requested.wait(0.5):
                self.check_children()
            self.say("stopping ...")
        except PortInUse as err:
            self.say(f"error: {err}")
            code = EXIT_USAGE
        except (DevError, ServerError) as err:
            self.say(f"error: {err}")
            code = EXIT_FAILED
        finally:
            self.shutdown(self.options.stop_grace_seconds)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code == EXIT_OK:
            self.say("stopped.")
        return code


def run(options: DevOptions) -> int:
    """Run the local region (or regions) until Ctrl-C; returns the exit code."""
    if len(options.regions) > 1:
        return MultiRegionSupervisor(options).run()
    return Supervisor(options).run()


# -- two regions on one machine (`reportgrid-dev --regions a,b`) ----------------------------


def arbitrated(deployment: LocalDeployment) -> bool:
    """Whether the region's workers claim through the lease arbiter (the template says so)."""
    try:
        standby = deployment.container("standby")
    except DeploymentError:
        return False
    return bool(standby.env.get(resources.ENV.ARBITER_TABLE_NAME))


def create_lease_table(ddb: DynamoDBClient, table_name: str = resources.ARBITER_TABLE_NAME) -> None:
    """This region's replica of the lease arbiter's table (cdk LeaseTable: its key only)."""
    ddb.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": resources.PARTITION_KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": resources.PARTITION_KEY, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


REGION_LETTERS: Final = "ab"


@dataclass
class RegionRun:
    """One local region of a multi-region run and the processes that make it."""

    region: str
    letter: str
    edge_port: int
    resources: RegionResources
    redis: RedisServer
    env: dict[str, str]
    deployment: LocalDeployment
    children: list[Child] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.edge_port}"


class MultiRegionSupervisor(Supervisor):
    """Two regions on one moto server: per region its own resources, Redis, edge (on
    edge_port + its index), Kinesis runner (driving the stream worker and the mirror
    consumer), queue worker and standby worker, peered with the other region; and the
    global-table replicator between them. `kill_region`/`restart_region` are the drill's
    levers."""

    def __init__(self, options: DevOptions, console: IO[str] = sys.stdout) -> None:
        super().__init__(options, console)
        regions = options.regions
        if len(regions) != len(REGION_LETTERS) or len(set(regions)) != len(regions):
            raise DevError("give two distinct regions, e.g. --regions us-east-1,eu-west-1")
        self.runs: dict[str, RegionRun] = {}
        self.replicator: GlobalTableReplicator | None = None

    def check_ports(self) -> None:
        ports = [self.options.edge_port + i for i in range(len(self.options.regions))]
        for port in ports:
            if port_taken(port):
                raise PortInUse(
                    f"port {port} (an edge of --regions) is already in use; stop what holds "
                    "it or choose another base with --port"
                )

    def start(self) -> None:
        """Everything up to both edges SERVING; raises DevError/ServerError."""
        opts = self.options
        self.check_ports()
        self.state.prepare(persist=False)
        shared = (resources.ARBITER_TABLE_NAME,) if opts.lease_arbiter else ()
        self.moto = MotoServer(
            opts.moto_port or None, self.state.logs / "moto.log", shared_tables=shared
        ).start()
        endpoint = self.moto.endpoint_url
        self.say(f"started moto server on {endpoint} (serving {', '.join(opts.regions)})")
        made = {r: create_region(r, endpoint, shards=opts.shards) for r in opts.regions}
        for region in opts.regions if opts.lease_arbiter else ():
            create_lease_table(client("dynamodb", region, endpoint))
        secret = self.state.id_secret(persist=False)
        self.api_key = self.state.api_key(persist=False)
        env_names = resources.ENV
        self.say("synthesizing the deployment (cached while its sources do not change) ...")
        try:
            assembly = synthesize(opts.regions, lease_arbiter=opts.lease_arbiter)
            images = build_images()
        except DeploymentError as error:
            raise DevError(str(error)) from None
        for index, region in enumerate(opts.regions):
            letter = REGION_LETTERS[index]
            redis = RedisServer(None, self.state.logs / f"redis-{letter}.log").start()
            ddb = client("dynamodb", region, endpoint)
            # Each replica gets the key: the replicator only carries later changes.
            apikeys.put_key(ddb, made[region].table_name, self.api_key, DEV_TENANT, name="dev")
            env = {env_names.REDIS_URL: redis.url, env_names.ID_SECRETS: secret}
            try:
                deployment = prepare(
                    assembly,
                    region,
                    endpoint_url=endpoint,
                    images=images,
                    redis_url=redis.url,
                    id_secrets=secret,
                )
            except DeploymentError as error:
                raise DevError(str(error)) from None
            if opts.lease_arbiter and not arbitrated(deployment):
                raise DevError(
                    f"the synthesized stack of {region} claims without the lease arbiter: "
                    "synthesize with reportgrid:leaseArbiter (docs/MULTI_REGION.md)"
                )
            self.runs[region] = RegionRun(
                region, letter, opts.edge_port + index, made[region], redis, env, deployment
            )
            self.say(f"region {region}: redis-server on {redis.url}")
        self.replicator = GlobalTableReplicator(
            endpoint, list(opts.regions), lag_seconds=opts.replication_lag_seconds
        ).start()
        for run in self.runs.values():
            self.start_region(run)
        for run in self.runs.values():
            self.wait_for_edge(run.edge_port, f"edge-{run.letter}")

    def start_region(self, run: RegionRun) -> None:
        n = run.letter
        tuning = dict(self.options.extra_env)
        deployment = run.deployment
        try:
            edge = deployment.container("edge", self.local_overrides(run.edge_port) | tuning)
            worker = deployment.container("worker", tuning)
            standby = deployment.container("standby", tuning)
        except DeploymentError as error:
            raise DevError(str(error)) from None
        lambdas = self.event_sources(
            deployment, run.env, state=self.state.kinesis / run.region, with_peer=True
        )
        programs = {
            f"edge-{n}": edge,
            f"lambda-{n}": lambdas,
            f"queue-{n}": worker,
            f"standby-{n}": standby,
        }
        run.children = [self.spawn(name, p.argv, p.env) for name, p in programs.items()]

    def kill_region(self, region: str) -> None:
        """Lose the region: SIGKILL every one of its processes (each whole process group)
        and its Redis. The shared moto server stays: it also serves the other region."""
        run = self.runs[region]
        for child in run.children:
            if child.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
        run.redis.kill()
        for child in run.children:
            if child.process is not None:
                child.process.wait()
            if child.pump is not None:
                child.pump.join(2.0)
        self.children = [c for c in self.children if c not in run.children]
        run.children = []

    def restart_region(self, region: str) -> None:
        """Bring a killed region back: Redis on its old port, then its processes (the
        Kinesis runner resumes from its checkpoints: the backlog)."""
        run = self.runs[region]
        run.redis = RedisServer(run.redis.port, self.state.logs / f"redis-{run.letter}.log")
        run.redis.start()
        self.start_region(run)
        self.wait_for_edge(run.edge_port, f"edge-{run.letter}")

    def endpoints(self) -> list[str]:
        return [run.endpoint for run in self.runs.values()]

    def banner(self) -> None:
        env = resources.ENV
        lines = ["", "Reportgrid local regions are ready."]
        lines += [f"  {run.region}: {run.endpoint}" for run in self.runs.values()]
        lines += [
            f"  API key:  {self.api_key}  (tenant {DEV_TENANT!r})",
            f"  state:    {self.options.state_dir}  (logs in {self.state.logs})",
            "In another terminal (the SDK and CLI fail over in this order):",
            f"  export {env.CLIENT_ENDPOINT}={','.join(self.endpoints())}",
            f"  export {env.CLIENT_API_KEY}={self.api_key}",
            "  reportgrid-drill region-loss   # or: reportgrid submit ... --durability multi",
            "Press Ctrl-C to stop.",
            "",
        ]
        self.say("\n".join(lines))

    def shutdown(self, grace: float) -> None:
        self.stop_children(grace)
        if self.replicator is not None:
            self.replicator.stop()
        for run in self.runs.values():
            run.redis.stop()
        if self.moto is not None:
            self.moto.stop()
