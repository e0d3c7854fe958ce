"""Health that follows the edge's dependencies, with hysteresis.

Once the edge is SERVING, a probe of what a Submit needs (DynamoDB and Kinesis) runs every
`interval` seconds. `fail_after` failed probes in a row set health NOT_SERVING, so the ALB
takes the task out and, with every task of a region out, Global Accelerator moves new
connections to the next region; `recover_after` successes in a row set it SERVING again.
One slow probe (a blip) changes nothing: flapping would send a whole fleet's clients back
and forth.

grpc.health.v1 answers NOT_SERVING with status OK, and the ALB's gRPC health check judges
only the status code. So the edge also answers READINESS_METHOD: OK while SERVING and
UNAVAILABLE otherwise (including during a drain); the ALB target group checks that path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
from aws_lambda_powertools import Logger
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from reportgrid import resources

logger = Logger(service="reportgrid-edge", child=True)

READINESS_SERVICE: Final = resources.EDGE_READINESS_PATH.split("/")[1]
READINESS_METHOD: Final = resources.EDGE_READINESS_PATH.split("/")[2]
DEFAULT_INTERVAL_SECONDS: Final = resources.EDGE_HEALTH_INTERVAL_SECONDS
DEFAULT_FAIL_AFTER: Final = resources.EDGE_HEALTH_FAIL_AFTER
DEFAULT_RECOVER_AFTER: Final = resources.EDGE_HEALTH_RECOVER_AFTER

Probe = Callable[[], Awaitable[None]]


@dataclass
class HealthStats:
    probes: int = 0
    failures: int = 0
    went_down: int = 0
    came_back: int = 0


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
    ) -> None:
        if fail_after < 1 or recover_after < 1:
            raise ValueError("fail_after and recover_after must be at least 1")
        self._health = health
        self._probe = probe
        self._services = tuple(services)
        self.interval = interval
        self._timeout = interval if timeout is None else timeout
        self._fail_after = fail_after
        self._recover_after = recover_after
        self.serving = False
        self.draining = False
        self._streak = 0  # consecutive results contradicting the current state
        self.last_error = ""
        self.stats = HealthStats()

    async def set_serving(self, serving: bool) -> None:
        self.serving = serving
        self._streak = 0
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in self._services:
            await self._health.set(service, status)

    async def probe_once(self) -> bool:
        """One probe; updates the state with hysteresis. Returns the probe's result."""
        self.stats.probes += 1
        try:
            await asyncio.wait_for(self._probe(), self._timeout)
            ok = True
        except Exception as err:
            ok = False
            self.stats.failures += 1
            self.last_error = type(err).__name__
        await self.observe(ok)
        return ok

    async def observe(self, ok: bool) -> None:
        if ok == self.serving:
            self._streak = 0
            return
        self._streak += 1
        if self.serving and self._streak >= self._fail_after:
            logger.warning(
                "dependencies failing; health NOT_SERVING", extra={"error": self.last_error}
            )
            self.stats.went_down += 1
            await self.set_serving(False)
        elif not self.serving and self._streak >= self._recover_after:
            logger.info("dependencies answer again; health SERVING")
            self.stats.came_back += 1
            await self.set_serving(True)

    async def run(self) -> None:
        """Probe forever (cancel to stop). Each round starts `interval` after the last."""
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
