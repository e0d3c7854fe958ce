"""The interceptor chain every ReportService call goes through, in this order:

    load shedding -> metrics/logging -> errors->status -> authentication
        -> tenant rate limit -> parse -> handler

They are composed once per method when the server is built, around the method's behaviour,
rather than as grpc.aio.ServerInterceptor objects: an aio interceptor costs an extra
coroutine and handler lookup on every call, and cannot see the request bytes. Seeing the
bytes matters: methods are registered without a deserializer and the request is parsed
here, so corrupt protobuf is INVALID_ARGUMENT instead of grpc's INTERNAL.

Health and reflection are separate services and are not wrapped: they need no API key, and
they are never shed, so an overloaded process still answers its health checks.

Load shedding is done here rather than by grpc's `maximum_concurrent_rpcs`: grpc rejects
over its limit before any application code runs, so those calls could not be counted
(ShedRequests). Here the check is the first thing a call does: an integer comparison, then
RESOURCE_EXHAUSTED with a retry delay.

Two pools, each with a per-process limit and a per-tenant share of it (issue 19): calls
(unary and DownloadReport) and WatchReport streams, which may stay open for an hour and so
never hold a call's slot. A tenant over its share gets RESOURCE_EXHAUSTED with a
QuotaFailure naming the limit; other tenants are not affected.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc
from aws_lambda_powertools import Logger
from google.protobuf.message import DecodeError, Message

from grpc_edge.auth import ApiKeyResolver, Grant, TenantRateLimiter
from grpc_edge.call import Call, CallBudget
from grpc_edge.metrics import EdgeMetrics, MethodMetrics
from reportgrid import status
from reportgrid.errors import InvalidArgument, ReportgridError, ResourceExhausted
from reportgrid.settings import Settings

logger = Logger(service="reportgrid-edge", child=True)

RequestT = TypeVar("RequestT", bound=Message)
# A unary handler may answer with bytes: a reply it serialized (and cached) itself.
UnaryHandler = Callable[[Any, Call], Awaitable[Message | bytes]]
StreamHandler = Callable[[Any, Call], AsyncIterator[Message]]

_OK: Final = "OK"
_SHED: Final = "RESOURCE_EXHAUSTED"
# Codes whose calls are logged: our failures, not the caller's.
_LOGGED: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})
# A shed call should come back after the calls in flight had time to finish; a shed watch
# after some of the (long) watches have ended.
SHED_RETRY_SECONDS: Final = 0.05
WATCH_SHED_RETRY_SECONDS: Final = 1.0
# Resolved `authorization` values: skips parsing and hashing the key on every call. Short,
# so a key revoked in the table stops working at most this long after the resolver's own
# cache lets go of it.
_TENANT_MEMO_SECONDS: Final = 1.0
_TENANT_MEMO_LIMIT: Final = 10_000


def _serialize(message: Message | bytes) -> bytes:
    if type(message) is bytes:
        return message
    return message.SerializeToString()  # type: ignore[union-attr]


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == "x-request-id":
            return value if isinstance(value, str) else value.decode(errors="replace")
    return uuid.uuid4().hex


class Pool:
    """Concurrent calls of one kind in this process: at most `limit` in all, at most
    `tenant_limit` of them one tenant's."""

    def __init__(self, kind: str, *, limit: int, tenant_limit: int, retry_after: float) -> None:
        self.kind = kind
        self.limit = limit
        self.tenant_limit = tenant_limit
        self.retry_after = retry_after
        self.in_flight = 0
        self.by_tenant: dict[str, int] = {}
        self.shed = 0  # refused at the process's limit
        self.tenant_shed = 0  # refused at a tenant's share
        # Built once: shedding must stay cheap when the process is overloaded.
        self.overloaded = status.to_rpc_status(
            ResourceExhausted(
                f"this server is at its limit of {limit} concurrent {kind}; retry",
                retry_after=retry_after,
                subject=f"server:concurrent-{kind}",
            )
        )

    def full(self) -> bool:
        return self.in_flight >= self.limit

    def enter(self, tenant: str) -> None:
        """Take one of the tenant's slots, or raise ResourceExhausted naming its limit."""
        held = self.by_tenant.get(tenant, 0)
        if held >= self.tenant_limit:
            self.tenant_shed += 1
            raise ResourceExhausted(
                f"this tenant has {held} concurrent {self.kind} on this server, its limit "
                f"of {self.tenant_limit}; retry when some have ended",
                retry_after=self.retry_after,
                subject=f"tenant:concurrent-{self.kind}",
            )
        self.by_tenant[tenant] = held + 1

    def leave(self, tenant: str) -> None:
        held = self.by_tenant.get(tenant, 0) - 1
        if held > 0:
            self.by_tenant[tenant] = held
        else:
            self.by_tenant.pop(tenant, None)  # no entry per tenant ever seen


class Chain:
    """Wraps handlers in the interceptors; one per server."""

    def __init__(
        self,
        *,
        service_name: str,
        auth: ApiKeyResolver,
        limiter: TenantRateLimiter,
        metrics: EdgeMetrics,
        settings: Settings,
    ) -> None:
        self.service_name = service_name
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.budget = CallBudget.of(settings)
        self.calls = Pool(
            "calls",
            limit=settings.max_concurrent_rpcs,
            tenant_limit=settings.tenant_max_concurrent_rpcs,
            retry_after=SHED_RETRY_SECONDS,
        )
        self.watches = Pool(
            "watches",
            limit=settings.max_concurrent_watches,
            tenant_limit=settings.tenant_max_concurrent_watches,
            retry_after=WATCH_SHED_RETRY_SECONDS,
        )
        self._tenants: dict[str | bytes, tuple[float, Grant]] = {}

    @property
    def shed(self) -> int:
        """Calls and watches refused at the process's limits (ShedRequests)."""
        return self.calls.shed + self.watches.shed

    @property
    def tenant_shed(self) -> int:
        """Calls and watches refused at a tenant's share."""
        return self.calls.tenant_shed + self.watches.tenant_shed

    async def _tenant(self, context: grpc.aio.ServicerContext[Any, Any]) -> Grant:
        metadata = context.invocation_metadata()
        for name, value in metadata or ():
            if name == "authorization":
                memo = self._tenants.pop(value, None)
                now = time.monotonic()
                if memo is not None and memo[0] > now:
                    self._tenants[value] = memo  # back at the end: least recently used first
                    return memo[1]
                grant = await self.auth.grant_of(metadata)
                # Dicts keep insertion order and every use moves a key to the end, so many
                # keys evict the least recently used one, never every tenant at once.
                if len(self._tenants) >= _TENANT_MEMO_LIMIT:
                    del self._tenants[next(iter(self._tenants))]
                self._tenants[value] = (now + _TENANT_MEMO_SECONDS, grant)
                return grant
        return await self.auth.grant_of(metadata)  # raises the precise Unauthenticated

    async def _admit(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        raw: bytes,
        request_type: type[RequestT],
        pool: Pool,
    ) -> tuple[RequestT, Call]:
        """Authenticate, rate-limit, take one of the tenant's slots in `pool` (the caller
        gives it back when `Call` was returned) and parse."""
        grant = await self._tenant(context)
        tenant = grant.tenant
        self.limiter.admit(tenant)
        pool.enter(tenant)
        try:
            request = request_type.FromString(raw)
        except (DecodeError, ValueError):
            pool.leave(tenant)
            raise InvalidArgument.field(
                "", f"the request is not a valid {request_type.DESCRIPTOR.full_name} message"
            ) from None
        deadline = self.budget.deadline(context.time_remaining(), long_lived=pool is self.watches)
        return request, Call(tenant, deadline, grant.prefix, context.invocation_metadata() or ())

    async def _fail(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        error: BaseException,
        request: Message | None,
        call: Call | None,
    ) -> grpc.StatusCode:
        code = status.status_code_of(error)
        if code in _LOGGED:
            extra = {
                "method": method,
                "request_id": _request_id(context),
                "code": code.name,
                "tenant": call.tenant if call is not None else None,
                "report_id": getattr(request, "report_id", None) or None,
                "idempotency_key": getattr(request, "idempotency_key", None) or None,
            }
            if isinstance(error, ReportgridError) and code is not grpc.StatusCode.INTERNAL:
                logger.warning(error.message, extra=extra)
            else:
                logger.exception("unexpected error", extra=extra, exc_info=error)
        return code

    @staticmethod
    async def _shed(
        context: grpc.aio.ServicerContext[Any, Any], recorder: MethodMetrics, pool: Pool
    ) -> None:
        pool.shed += 1
        recorder.record(_SHED, 0.0)
        await context.abort_with_status(pool.overloaded)

    @staticmethod
    def _cancel_code(context: grpc.aio.ServicerContext[Any, Any]) -> str:
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"

    def unary(
        self, method: str, request_type: type[Message], handler: UnaryHandler
    ) -> grpc.RpcMethodHandler[Any, Any]:
        recorder = self.metrics.method(method)
        pool = self.calls

        async def behavior(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message | bytes:
            if pool.full():
                await self._shed(context, recorder, pool)
            pool.in_flight += 1
            started = time.perf_counter()
            code = _OK
            request = call = None
            try:
                request, call = await self._admit(context, raw, request_type, pool)
                return await handler(request, call)
            except asyncio.CancelledError:
                code = self._cancel_code(context)
                raise
            except Exception as error:
                code = (await self._fail(context, method, error, request, call)).name
                await context.abort_with_status(status.to_rpc_status(error))
                raise  # abort_with_status always raises; this keeps the type checker honest
            finally:
                pool.in_flight -= 1
                if call is not None:
                    pool.leave(call.tenant)
                recorder.record(code, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serialize
        )

    def stream(
        self,
        method: str,
        request_type: type[Message],
        handler: StreamHandler,
        *,
        long_lived: bool = False,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """A server-streaming method; `long_lived` ones (WatchReport) are counted in the
        watch pool and get the watch budget instead of the call budget."""
        recorder = self.metrics.method(method)
        pool = self.watches if long_lived else self.calls

        async def behavior(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Message]:
            if pool.full():
                await self._shed(context, recorder, pool)
            pool.in_flight += 1
            started = time.perf_counter()
            code = _OK
            request = call = None
            try:
                request, call = await self._admit(context, raw, request_type, pool)
                async for response in handler(request, call):
                    yield response
            except asyncio.CancelledError:
                code = self._cancel_code(context)
                raise
            except Exception as error:
                code = (await self._fail(context, method, error, request, call)).name
                await context.abort_with_status(status.to_rpc_status(error))
                raise
            finally:
                pool.in_flight -= 1
                if call is not None:
                    pool.leave(call.tenant)
                recorder.record(code, time.perf_counter() - started)

        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serialize
        )
