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

from grpc_edge.auth import ApiKeyResolver, TenantRateLimiter
from grpc_edge.metrics import EdgeMetrics, MethodMetrics
from grpc_edge.service import DEFAULT_BUDGET_SECONDS, Call
from reportgrid import status
from reportgrid.errors import InvalidArgument, ReportgridError, ResourceExhausted

logger = Logger(service="reportgrid-edge", child=True)

RequestT = TypeVar("RequestT", bound=Message)
# A unary handler may answer with bytes: a reply it serialized (and cached) itself.
UnaryHandler = Callable[[Any, Call], Awaitable[Message | bytes]]
StreamHandler = Callable[[Any, Call], AsyncIterator[Message]]

_OK: Final = "OK"
_SHED: Final = "RESOURCE_EXHAUSTED"
# Codes whose calls are logged: our failures, not the caller's.
_LOGGED: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})
# A shed call should come back after the calls in flight had time to finish.
SHED_RETRY_SECONDS: Final = 0.05
_OVERLOADED: Final = status.to_rpc_status(
    ResourceExhausted(
        "this server is at its concurrent call limit; retry",
        retry_after=SHED_RETRY_SECONDS,
        subject="server:concurrent-calls",
    )
)
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


class Chain:
    """Wraps handlers in the interceptors; one per server."""

    def __init__(
        self,
        *,
        service_name: str,
        auth: ApiKeyResolver,
        limiter: TenantRateLimiter,
        metrics: EdgeMetrics,
        max_in_flight: int,
    ) -> None:
        self.service_name = service_name
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0  # calls refused at the concurrency limit
        self._tenants: dict[str | bytes, tuple[float, str]] = {}

    async def _tenant(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        metadata = context.invocation_metadata()
        for name, value in metadata or ():
            if name == "authorization":
                memo = self._tenants.get(value)
                now = time.monotonic()
                if memo is not None and memo[0] > now:
                    return memo[1]
                tenant = await self.auth.tenant_of(metadata)
                if len(self._tenants) >= _TENANT_MEMO_LIMIT:
                    self._tenants.clear()
                self._tenants[value] = (now + _TENANT_MEMO_SECONDS, tenant)
                return tenant
        return await self.auth.tenant_of(metadata)  # raises the precise Unauthenticated

    async def _admit(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        raw: bytes,
        request_type: type[RequestT],
    ) -> tuple[RequestT, Call]:
        tenant = await self._tenant(context)
        self.limiter.admit(tenant)
        try:
            request = request_type.FromString(raw)
        except (DecodeError, ValueError):
            raise InvalidArgument.field(
                "", f"the request is not a valid {request_type.DESCRIPTOR.full_name} message"
            ) from None
        remaining = context.time_remaining()
        budget = DEFAULT_BUDGET_SECONDS if remaining is None else min(remaining, 24 * 3600)
        return request, Call(tenant, time.monotonic() + budget)

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

    async def _shed(
        self, context: grpc.aio.ServicerContext[Any, Any], recorder: MethodMetrics
    ) -> None:
        self.shed += 1
        recorder.record(_SHED, 0.0)
        await context.abort_with_status(_OVERLOADED)

    @staticmethod
    def _cancel_code(context: grpc.aio.ServicerContext[Any, Any]) -> str:
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"

    def unary(
        self, method: str, request_type: type[Message], handler: UnaryHandler
    ) -> grpc.RpcMethodHandler[Any, Any]:
        recorder = self.metrics.method(method)

        async def behavior(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message | bytes:
            if self.in_flight >= self.max_in_flight:
                await self._shed(context, recorder)
            self.in_flight += 1
            started = time.perf_counter()
            code = _OK
            request = call = None
            try:
                request, call = await self._admit(context, raw, request_type)
                return await handler(request, call)
            except asyncio.CancelledError:
                code = self._cancel_code(context)
                raise
            except Exception as error:
                code = (await self._fail(context, method, error, request, call)).name
                await context.abort_with_status(status.to_rpc_status(error))
                raise  # abort_with_status always raises; this keeps the type checker honest
            finally:
                self.in_flight -= 1
                recorder.record(code, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serialize
        )

    def stream(
        self, method: str, request_type: type[Message], handler: StreamHandler
    ) -> grpc.RpcMethodHandler[Any, Any]:
        recorder = self.metrics.method(method)

        async def behavior(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Message]:
            if self.in_flight >= self.max_in_flight:
                await self._shed(context, recorder)
            self.in_flight += 1
            started = time.perf_counter()
            code = _OK
            request = call = None
            try:
                request, call = await self._admit(context, raw, request_type)
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
                self.in_flight -= 1
                recorder.record(code, time.perf_counter() - started)

        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serialize
        )
