"""Health that follows the edge's dependencies, with hysteresis.

Once the edge is SERVING, the monitor looks every `interval` seconds at what a Submit needs:

- DynamoDB: one GetItem of a probe key (a data-plane read; it scales with the table).
- Kinesis: the outcomes of the edge's own PutRecords calls since the last look (the
  producer records them: grpc_edge/batcher.py CallOutcomes). A call that got a record in
  is good; a call that raised, or whose every record was rejected (a whole batch
  throttled), is bad, and so is a call still running after `interval` (an endpoint that
  hangs). Only when the process has had no PutRecords outcome for KINESIS_IDLE_SECONDS
  does the monitor call DescribeStreamSummary, and then at most once per
  KINESIS_PROBE_MIN_INTERVAL_SECONDS x (1 .. 1 + KINESIS_PROBE_JITTER), per process,
  start-up included. DescribeStreamSummary is a control-plane call with a quota of
  DESCRIBE_STREAM_SUMMARY_ACCOUNT_TPS for the whole account (Kinesis API reference,
  DescribeStreamSummary: "has a limit of 20 transactions per second per account"): a busy
  fleet makes none, an idle or NOT_SERVING one stays far below it
  (tests/unit/edge/test_health_quota.py does the arithmetic). A throttled probe
  (LimitExceededException) is no evidence either way.

Each dependency has its own hysteresis: `fail_after` bad observations in a row take it
down, `recover_after` good ones bring it back; a look with no news (idle, probe not due)
changes nothing. The edge is SERVING while both are up. So a busy edge whose Kinesis fails
is NOT_SERVING after about fail_after x interval (6 s); an idle one within fail_after probe
slots; an edge taken out recovers within recover_after probe slots (at most 45 s) of
Kinesis answering again, or recover_after looks once traffic reaches it. One slow call (a
blip) changes nothing: flapping would send a whole fleet's clients back and forth.

grpc.health.v1 answers NOT_SERVING with status OK, and the ALB's gRPC health check judges
only the status code. So the edge also answers READINESS_METHOD: OK while SERVING and
UNAVAILABLE otherwise (including during a drain); the ALB target group checks that path.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from grpc_edge.batcher import CallOutcomes
from reportgrid import resources

logger = Logger(service="reportgrid-edge", child=True)

READINESS_SERVICE: Final = resources.EDGE_READINESS_PATH.split("/")[1]
READINESS_METHOD: Final = resources.EDGE_READINESS_PATH.split("/")[2]
DEFAULT_INTERVAL_SECONDS: Final = resources.EDGE_HEALTH_INTERVAL_SECONDS
DEFAULT_FAIL_AFTER: Final = resources.EDGE_HEALTH_FAIL_AFTER
DEFAULT_RECOVER_AFTER: Final = resources.EDGE_HEALTH_RECOVER_AFTER
# https://docs.aws.amazon.com/kinesis/latest/APIReference/API_DescribeStreamSummary.html
DESCRIBE_STREAM_SUMMARY_ACCOUNT_TPS: Final = 20
# One DescribeStreamSummary per process at most this often (then jittered up to +50 %), so
# processes that started together do not probe together.
KINESIS_PROBE_MIN_INTERVAL_SECONDS: Final = 15.0
KINESIS_PROBE_JITTER: Final = 0.5
# With no PutRecords outcome for this long, the outcomes say nothing and a probe may run.
KINESIS_IDLE_SECONDS: Final = 5.0
# Kinesis's answer to a control-plane call over its quota.
_PROBE_THROTTLED: Final = frozenset({"LimitExceededException", "ThrottlingException"})

Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class HealthTiming:
    """The monitor's dials; the defaults are the deployed ones (tests shorten them)."""

    interval: float = DEFAULT_INTERVAL_SECONDS
    fail_after: int = DEFAULT_FAIL_AFTER
    recover_after: int = DEFAULT_RECOVER_AFTER
    probe_min_interval: float = KINESIS_PROBE_MIN_INTERVAL_SECONDS
    probe_jitter: float = KINESIS_PROBE_JITTER
    idle_after: float = KINESIS_IDLE_SECONDS

    @property
    def probe_max_interval(self) -> float:
        return self.probe_min_interval * (1 + self.probe_jitter)


@dataclass
class HealthStats:
    probes: int = 0
    failures: int = 0
    went_down: int = 0
    came_back: int = 0
    kinesis_probes: int = 0  # DescribeStreamSummary calls made
    kinesis_failures: int = 0  # bad Kinesis observations (outcomes or probes)


class _Hysteresis:
    """Up or down, changed only by a run of contrary observations."""

    def __init__(self, fail_after: int, recover_after: int) -> None:
        if fail_after < 1 or recover_after < 1:
            raise ValueError("fail_after and recover_after must be at least 1")
        self._fail_after = fail_after
        self._recover_after = recover_after
        self.up = False
        self._streak = 0  # consecutive observations contradicting `up`

    def reset(self, up: bool) -> None:
        self.up = up
        self._streak = 0

    def observe(self, ok: bool) -> None:
        if ok == self.up:
            self._streak = 0
            return
        self._streak += 1
        if self._streak >= (self._fail_after if self.up else self._recover_after):
            self.reset(ok)


class KinesisSignal:
    """Whether the task stream takes records: from the producer's PutRecords outcomes, and
    from a bounded-rate DescribeStreamSummary only when those are silent."""

    def __init__(self, outcomes: CallOutcomes, probe: Probe, timing: HealthTiming) -> None:
        self._outcomes = outcomes
        self._probe = probe
        self._timing = timing
        self._next_probe_at = 0.0  # the first probe (start-up) may run at once
        self.probes = 0
        self.last_error = ""

    async def observe(self) -> bool | None:
        """Good, bad, or None for no news since the last look."""
        now = time.monotonic()
        accepted, failed = self._outcomes.take()
        if accepted:
            return True
        running_since = self._outcomes.oldest_running()
        if failed:
            self.last_error = "PutRecords failed"
            return False
        if running_since is not None:
            if now - running_since > self._timing.interval:
                self.last_error = "PutRecords hangs"
                return False
            return None  # a call is out; its outcome will tell
        last = self._outcomes.last_outcome_at
        if last is not None and now - last < self._timing.idle_after:
            return None
        return await self._probe_if_due(now)

    async def _probe_if_due(self, now: float) -> bool | None:
        if now < self._next_probe_at:
            return None
        jitter = random.uniform(0, self._timing.probe_jitter)  # noqa: S311 -- spread, not secrecy
        self._next_probe_at = now + self._timing.probe_min_interval * (1 + jitter)
        self.probes += 1
        try:
            await asyncio.wait_for(self._probe(), self._timing.interval)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in _PROBE_THROTTLED:
                return None  # the account's control-plane quota, not the stream
            self.last_error = f"DescribeStreamSummary {code}"
            return False
        except Exception as err:
            self.last_error = f"DescribeStreamSummary {type(err).__name__}"
            return False
        return True


class DependencyHealth:
    def __init__(
        self,
        health: HealthServicer,
        probe: Probe,
        *,
        services: Sequence[str] = ("",),
        interval: float = DEFAULT_INTERVAL_SECONDS,
        timeout: float | None = None,
        fail_after: int = DEFAULT_FAIL_AFTER,
        recover_after: int = DEFAULT_RECOVER_AFTER,
        kinesis: KinesisSignal | None = None,
    ) -> None:
        """`probe` is the store's cheap read; `kinesis`, when given, the task stream's."""
        self._health = health
        self._probe = probe
        self._services = tuple(services)
        self.interval = interval
        self._timeout = interval if timeout is None else timeout
        self._store = _Hysteresis(fail_after, recover_after)
        self._stream = _Hysteresis(fail_after, recover_after)
        self.kinesis = kinesis
        self.serving = False
        self.draining = False
        self.last_error = ""
        self.stats = HealthStats()

    async def set_serving(self, serving: bool) -> None:
        self._store.reset(serving)
        self._stream.reset(serving)
        await self._publish(serving)

    async def _publish(self, serving: bool) -> None:
        self.serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in self._services:
            await self._health.set(service, status)

    async def _store_ok(self) -> bool:
        self.stats.probes += 1
        try:
            await asyncio.wait_for(self._probe(), self._timeout)
        except Exception as err:
            self.stats.failures += 1
            self.last_error = type(err).__name__
            return False
        return True

    async def _stream_news(self) -> bool | None:
        if self.kinesis is None:
            return None
        before = self.kinesis.probes
        news = await self.kinesis.observe()
        self.stats.kinesis_probes += self.kinesis.probes - before
        if news is False:
            self.stats.kinesis_failures += 1
            self.last_error = self.kinesis.last_error
        return news

    async def probe_once(self) -> bool:
        """One look at every dependency; updates the state with hysteresis. Returns whether
        the store answered."""
        ok = await self._store_ok()
        self._store.observe(ok)
        news = await self._stream_news()
        if news is not None:
            self._stream.observe(news)
        serving = self._store.up and self._stream.up
        if serving != self.serving:
            if serving:
                logger.info("dependencies answer again; health SERVING")
                self.stats.came_back += 1
            else:
                logger.warning(
                    "dependencies failing; health NOT_SERVING", extra={"error": self.last_error}
                )
                self.stats.went_down += 1
            await self._publish(serving)
        return ok

    async def become_ready(self) -> None:
        """Return once the store answers and the stream is known good (a PutRecords outcome
        or a probe, within the probe's rate); then SERVING."""
        delay = 0.2
        stream_ok = self.kinesis is None
        while True:
            store_ok = await self._store_ok()
            if not stream_ok:
                stream_ok = bool(await self._stream_news())
            if store_ok and stream_ok:
                break
            logger.warning("dependencies not ready", extra={"error": self.last_error})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        await self.set_serving(True)

    async def run(self) -> None:
        """Look forever (cancel to stop). Each round starts `interval` after the last."""
        while True:
            started = time.monotonic()
            await self.probe_once()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def readiness_handler(self) -> grpc.GenericRpcHandler:
        """READINESS_METHOD for the ALB: OK while SERVING, UNAVAILABLE otherwise."""

        async def check(_request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            if self.serving and not self.draining:
                return health_pb2.HealthCheckResponse(
                    status=health_pb2.HealthCheckResponse.SERVING
                ).SerializeToString()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not serving")
            raise AssertionError("abort raises")

        return grpc.method_handlers_generic_handler(
            READINESS_SERVICE, {READINESS_METHOD: grpc.unary_unary_rpc_method_handler(check)}
        )
