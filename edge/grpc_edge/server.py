"""The edge server: `build_server(settings) -> (server, port)`, and `serve()` which runs one
process until SIGTERM.

Lifecycle: built (health NOT_SERVING) -> `start()` (serving; health SERVING once DynamoDB
and Kinesis answer) -> `drain()` on SIGTERM (health NOT_SERVING at once, new calls still
taken for `drain_delay` while the load balancer notices, then no new calls and in-flight
calls get `drain_grace_seconds` to finish) -> clients closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable
from typing import Any, Final

import grpc
from aws_lambda_powertools import Logger
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from grpc_edge.audit_log import AuditLog
from grpc_edge.auth import ApiKeyResolver, TenantRateLimiter
from grpc_edge.breaker import CircuitBreaker
from grpc_edge.cache import RedisTier, TerminalLru
from grpc_edge.clients import Clients
from grpc_edge.dependency_health import DependencyHealth, HealthTiming, KinesisSignal
from grpc_edge.idempotency import ClaimStore
from grpc_edge.interceptors import Chain
from grpc_edge.listing import ReportLister
from grpc_edge.metrics import FLUSH_SECONDS, EdgeMetrics
from grpc_edge.peer import PeerSender
from grpc_edge.producer import TaskProducer, make_producer
from grpc_edge.ratelimit import FleetRateLimiter
from grpc_edge.reads import ReportReader
from grpc_edge.result_storage import ResultStorage
from grpc_edge.schedule_store import ScheduleStore
from grpc_edge.schedules import ScheduleService
from grpc_edge.service import ReportService
from grpc_edge.store import ReportStore
from grpc_edge.tokens import PageTokens
from grpc_edge.watch import EventHub
from reportgrid import resources
from reportgrid.engine.registry import Registry
from reportgrid.settings import Settings
from reportgrid.v1 import reports_pb2 as pb

logger = Logger(service="reportgrid-edge")

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["ReportService"].full_name
# Keep connections rebalancing across the fleet (new tasks get traffic): max age recycles
# busy ones, max idle closes unused ones. The ALB's idle timeout is 15 min here
# (cdk/constructs/edge_service.py; 60 s is only ELB's default) and HTTP/2 PINGs do not reset
# it, nor reach the client through it: the server's pings only find dead ALB connections.
# Quiet WatchReport streams stay open by their heartbeats (grpc_edge/watch.py).
_OPTIONS: Final = (
    ("grpc.max_receive_message_length", resources.MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_connection_idle_ms", 50_000),
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", (resources.EDGE_DRAIN_GRACE_SECONDS) * 1000),
    ("grpc.so_reuseport", 1),
)
# Calls grpc core holds for the application before the event loop picks them up. Above
# `max_pending_requests` (grpc's default 1,000) core starts refusing new calls, and above
# the hard limit (default 3,000) it refuses all, with CANCELLED: a burst of thousands of
# calls on one process (10,000 in flight) would mostly fail before our code ever saw it,
# and uncounted. The queue may hold as many calls as the process admits at once
# (settings.max_concurrent_rpcs), and twice that before core refuses everything; beyond
# max_concurrent_rpcs the interceptors shed calls (RESOURCE_EXHAUSTED, counted).
PENDING_HARD_LIMIT_FACTOR: Final = 2


def server_options(settings: Settings) -> tuple[tuple[str, int], ...]:
    """The grpc core options of the edge's server."""
    pending = max(settings.max_concurrent_rpcs, 1000)  # never below grpc's own default
    return (
        *_OPTIONS,
        ("grpc.server.max_pending_requests", pending),
        ("grpc.server.max_pending_requests_hard_limit", PENDING_HARD_LIMIT_FACTOR * pending),
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS is spelled this way in grpc
        # core (include/grpc/impl/channel_arg_names.h): a client ping sooner than this after
        # the last one, with no data sent between, is a strike; the third (max_ping_strikes
        # 2) gets GOAWAY too_many_pings. The SDK pings every CLIENT_KEEPALIVE_SECONDS.
        ("grpc.http2.min_ping_interval_without_data_ms", settings.min_client_ping_interval_ms),
        # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (unlimited by default). It
        # is also the bound grpc core's rapid-reset defences (CVE-2023-44487) work from:
        # streams a client opens beyond it before acknowledging the SETTINGS are refused
        # (grpc/grpc#34638), reset streams still being torn down count against it, and
        # a connection's work per read is capped so one attacker cannot starve the others
        # (grpc/grpc#34639, grpc.http2.max_requests_per_read, left at its default).
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
    )


DEFAULT_DRAIN_DELAY_SECONDS: Final = 2.0
# The producer keeps at most this many PutRecords calls in flight and lingers this long for
# a batch to fill: while calls are out, records pile up and the next batch is bigger. Fewer,
# larger calls cost far less CPU per record (botocore's per-call work dominates).
PRODUCER_MAX_IN_FLIGHT: Final = 2
PRODUCER_LINGER_SECONDS: Final = 0.002
# Young-generation collections are what a request-serving process pays for: each request
# allocates and frees hundreds of objects with no cycles among them. A larger threshold
# makes collections rarer; everything built at start-up is frozen out of them (gc.freeze).
GC_THRESHOLDS: Final = (50_000, 20, 100)


def default_registry() -> Registry:
    from reportgrid.engine.kinds import REGISTRY  # noqa: PLC0415 -- written by the engine

    return REGISTRY


class EdgeServer:
    """The grpc.aio server with what it owns: clients, producer, health, metrics."""

    def __init__(
        self,
        *,
        server: grpc.aio.Server,
        settings: Settings,
        clients: Clients,
        producer: TaskProducer,
        service: ReportService,
        health: HealthServicer,
        hub: EventHub,
        metrics: EdgeMetrics,
        chain: Chain,
        store: ReportStore,
        owns_clients: bool,
        health_timing: HealthTiming | None = None,
    ) -> None:
        self.server = server
        self.settings = settings
        self.clients = clients
        self.producer = producer
        self.service = service
        self.health = health
        self.hub = hub
        self.metrics = metrics
        self.chain = chain
        self.store = store
        self._owns_clients = owns_clients
        self._background: set[asyncio.Task[None]] = set()
        self.serving = asyncio.Event()
        # Once SERVING, health follows the dependencies, with hysteresis (issue 9): the
        # stream's from the producer's own PutRecords outcomes, a DescribeStreamSummary
        # only when those are silent, at a bounded rate (grpc_edge/dependency_health.py).
        timing = health_timing or HealthTiming()
        self.dependency_health = DependencyHealth(
            health,
            store.ping,
            services=("", SERVICE_NAME),
            interval=timing.interval,
            fail_after=timing.fail_after,
            recover_after=timing.recover_after,
            kinesis=KinesisSignal(producer.outcomes, self._describe_stream, timing),
        )

    async def start(self) -> None:
        self.producer.start()
        await self.server.start()
        self._spawn(self._become_serving())
        self._spawn(self._flush_metrics())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _become_serving(self) -> None:
        """SERVING once the dependencies a Submit needs answer; retried until they do.
        Then health follows them (grpc_edge/dependency_health.py): NOT_SERVING only after
        several bad observations in a row, so a blip does not flip a whole fleet."""
        await self.dependency_health.become_ready()
        self.serving.set()
        self._spawn(self.dependency_health.run())

    async def _describe_stream(self) -> None:
        # The task role's kinesis:DescribeStreamSummary grant is in cdk/ (the edge service).
        await self.clients.kinesis.describe_stream_summary(
            StreamName=self.settings.task_stream_name
        )

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.metrics.flush()

    async def drain(self, *, delay: float = DEFAULT_DRAIN_DELAY_SECONDS) -> None:
        """Health NOT_SERVING now; keep answering for `delay` seconds while the load
        balancer stops routing here; then refuse new calls, let calls in flight finish
        within the grace period, and close everything."""
        await self.health.enter_graceful_shutdown()
        self.dependency_health.draining = True
        self.hub.draining = True  # watch streams end (UNAVAILABLE) so clients move on
        if delay > 0:
            await asyncio.sleep(delay)
        await self.server.stop(self.settings.drain_grace_seconds)
        await self.close()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.producer.close()
        if self.service.peer is not None:
            await self.service.peer.close()
        await self.hub.close()
        self.metrics.flush()
        if self._owns_clients:
            await self.clients.close()

    async def stop_now(self) -> None:
        """For tests: stop without the drain delay."""
        await self.health.enter_graceful_shutdown()
        self.dependency_health.draining = True
        self.hub.draining = True
        await self.server.stop(0.5)
        await self.close()


async def build_server(
    settings: Settings,
    *,
    registry: Registry | None = None,
    clients: Clients | None = None,
    host: str = "[::]",
    port: int | None = None,
    producer_linger_seconds: float = PRODUCER_LINGER_SECONDS,
    producer_max_in_flight: int = PRODUCER_MAX_IN_FLIGHT,
    health_timing: HealthTiming | None = None,
) -> tuple[EdgeServer, int]:
    """Build the server bound to host:port (port None = settings.edge_port; 0 = any free
    port). Clients are created here unless given (tests wrap them to inject faults)."""
    registry = registry if registry is not None else default_registry()
    owns_clients = clients is None
    clients = clients if clients is not None else await Clients.open(settings)

    breaker = CircuitBreaker("redis")
    redis_tier = RedisTier(clients.redis, breaker)
    store = ReportStore(clients.dynamodb, settings.table_name)
    reader = ReportReader(store, TerminalLru(), redis_tier)
    hub = EventHub(clients.redis, breaker)
    producer = make_producer(
        settings.edge_producer,
        clients.task_log(),
        settings.task_stream_name,
        linger_seconds=producer_linger_seconds,
        max_in_flight=producer_max_in_flight,
    )
    auth = ApiKeyResolver(clients.dynamodb, settings.table_name)
    service = ReportService(
        settings=settings,
        registry=registry,
        store=store,
        reader=reader,
        redis=redis_tier,
        hub=hub,
        producer=producer,
        # Page tokens are signed with the first id secret, under their own context string;
        # every id secret verifies them (a rotation keeps issued tokens working).
        lister=ReportLister(
            store, PageTokens([s.get_secret_value().encode() for s in settings.id_secrets])
        ),
        results=ResultStorage.of(settings, clients.s3, clients.replica_s3),
        peer=await PeerSender.open(settings),  # None without a peer region
        # Tenants' quotas (issue 15): read with their keys, the submit rate fleet-wide.
        quotas=auth.quotas,
        submit_limiter=FleetRateLimiter(clients.redis, breaker),
        audit=AuditLog(clients.dynamodb, settings.table_name, settings.region),
        claims=ClaimStore(
            clients.dynamodb,
            settings.table_name,
            region=settings.region,
            lean=clients.claims_json(),
        ),
    )
    schedules = ScheduleService(
        store=ScheduleStore(clients.dynamodb, settings.table_name),
        registry=registry,
        inputs=service.inputs,  # a template's input and notify policy is Submit's
        tokens=service.lister.tokens,
        region=settings.region,
        audit=service.audit,
    )
    metrics = EdgeMetrics()
    limiter = TenantRateLimiter(settings.tenant_rate_limit)
    chain = Chain(
        service_name=SERVICE_NAME,
        auth=auth,
        limiter=limiter,
        metrics=metrics,
        settings=settings,
    )
    _watch_counters(metrics, producer, reader, breaker, limiter, chain, service)

    # No `maximum_concurrent_rpcs`: the chain sheds over the limit itself, where it can count.
    server = grpc.aio.server(options=server_options(settings))
    handlers = {
        "SubmitReport": chain.unary("SubmitReport", pb.SubmitReportRequest, service.submit),
        "GetReport": chain.unary("GetReport", pb.GetReportRequest, service.get),
        "WatchReport": chain.stream(
            "WatchReport", pb.WatchReportRequest, service.watch, long_lived=True
        ),
        "ListReports": chain.unary("ListReports", pb.ListReportsRequest, service.list_reports),
        "CancelReport": chain.unary("CancelReport", pb.CancelReportRequest, service.cancel),
        "DeleteReport": chain.unary("DeleteReport", pb.DeleteReportRequest, service.delete),
        "DownloadReport": chain.stream(
            "DownloadReport", pb.DownloadReportRequest, service.download
        ),
        "ListReportKinds": chain.unary(
            "ListReportKinds", pb.ListReportKindsRequest, service.list_kinds
        ),
        **_schedule_handlers(chain, schedules),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)

    health = HealthServicer()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    bound = server.add_insecure_port(f"{host}:{settings.edge_port if port is None else port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    edge = EdgeServer(
        server=server,
        settings=settings,
        clients=clients,
        producer=producer,
        service=service,
        health=health,
        hub=hub,
        metrics=metrics,
        chain=chain,
        store=store,
        owns_clients=owns_clients,
        health_timing=health_timing,
    )
    server.add_generic_rpc_handlers((edge.dependency_health.readiness_handler(),))
    return edge, bound


def _schedule_handlers(
    chain: Chain, schedules: ScheduleService
) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The schedule RPCs (grpc_edge/schedules.py), behind the same interceptors."""
    return {
        "CreateSchedule": chain.unary("CreateSchedule", pb.CreateScheduleRequest, schedules.create),
        "GetSchedule": chain.unary("GetSchedule", pb.GetScheduleRequest, schedules.get),
        "ListSchedules": chain.unary("ListSchedules", pb.ListSchedulesRequest, schedules.list),
        "UpdateSchedule": chain.unary("UpdateSchedule", pb.UpdateScheduleRequest, schedules.update),
        "PauseSchedule": chain.unary("PauseSchedule", pb.PauseScheduleRequest, schedules.pause),
        "ResumeSchedule": chain.unary("ResumeSchedule", pb.ResumeScheduleRequest, schedules.resume),
        "DeleteSchedule": chain.unary("DeleteSchedule", pb.DeleteScheduleRequest, schedules.delete),
    }


def _watch_counters(  # noqa: PLR0917 -- one private call site, every argument distinct
    metrics: EdgeMetrics,
    producer: TaskProducer,
    reader: ReportReader,
    breaker: CircuitBreaker,
    limiter: TenantRateLimiter,
    chain: Chain,
    service: ReportService,
) -> None:
    m = resources.METRIC
    counters: dict[str, Callable[[], int]] = {
        # What the dashboards read (reportgrid.resources.METRIC).
        m.SHED_REQUESTS: lambda: chain.shed,
        m.CACHE_HITS: lambda: reader.stats.lru_hits + reader.stats.redis_hits,
        m.CACHE_MISSES: lambda: reader.stats.dynamodb_reads,
        # The detail behind them.
        "RateLimitedRequests": lambda: limiter.shed,
        "SubmitQuotaShed": lambda: service.submit_limiter.shed,
        "SubmitQuotaFallbacks": lambda: service.submit_limiter.fallbacks,
        "AuditWriteFailures": lambda: service.audit.failures,
        "TenantConcurrencyShed": lambda: chain.tenant_shed,
        "EnqueueBatches": lambda: producer.stats.batches,
        "EnqueuedRecords": lambda: producer.stats.records_accepted,
        "EnqueueRetries": lambda: producer.stats.record_retries,
        "EnqueueGivenUp": lambda: producer.stats.records_given_up,
        "CacheHitsLru": lambda: reader.stats.lru_hits,
        "CacheHitsRedis": lambda: reader.stats.redis_hits,
        "CoalescedReads": lambda: reader.stats.coalesced,
        "RedisBreakerOpened": lambda: breaker.opened_count,
    }
    for name, read in counters.items():
        metrics.watch_counter(name, read)
    metrics.watch_samples(m.BATCH_SIZE, producer.stats.recent_batch_sizes)


async def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    drain_delay: float = DEFAULT_DRAIN_DELAY_SECONDS,
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Run one edge process until SIGTERM/SIGINT; return the exit code."""
    edge, bound = await build_server(settings, host=host, port=port)
    await edge.start()
    # Start-up objects (modules, clients, schemas) live as long as the process: keep the
    # collector from scanning them again and again.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready_wait = asyncio.ensure_future(edge.serving.wait())
    stop_wait = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ready_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if edge.serving.is_set():
        if on_ready is not None:
            on_ready(bound)
        else:
            logger.info(f"listening on {_display(host)}:{bound}")
    await stop_wait
    ready_wait.cancel()
    started = time.monotonic()
    logger.info("draining", extra={"grace_seconds": settings.drain_grace_seconds})
    await edge.drain(delay=drain_delay)
    logger.info("stopped", extra={"drain_seconds": round(time.monotonic() - started, 3)})
    with contextlib.suppress(Exception):
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _display(host: str) -> str:
    return host.strip("[]") if host not in ("[::]", "0.0.0.0") else host  # noqa: S104
