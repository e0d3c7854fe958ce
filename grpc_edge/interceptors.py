"""The interceptor chain every ReportService call goes through, in this order:

    metrics/logging -> errors->status -> authentication -> tenant rate limit -> parse -> handler

They are composed once per method when the server is built, around the method's behaviour,
rather than as grpc.aio.ServerInterceptor objects: an aio interceptor costs an extra
coroutine and handler lookup on every call, and cannot see the request bytes. Seeing the
bytes matters: methods are registered without a deserializer and the request is parsed
here, so corrupt protobuf is INVALID_ARGUMENT instead of grpc's INTERNAL.

Health and reflection are separate services and are not wrapped: they need no API key.
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
from grpc_edge.metrics import EdgeMetrics
from grpc_edge.service import DEFAULT_BUDGET_SECONDS, Call
from reportgrid import status
from reportgrid.errors import InvalidArgument, ReportgridError

logger = Logger(service="reportgrid-edge", child=True)

RequestT = TypeVar("RequestT", bound=Message)
UnaryHandler = Callable[[Any, Call], Awaitable[Message]]
StreamHandler = Callable[[Any, Call], AsyncIterator[Message]]

_OK: Final = "OK"
# Codes whose calls are logged: our failures, not the caller's.
_LOGGED: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


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
    ) -> None:
        self.service_name = service_name
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics

    async def _admit(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        raw: bytes,
        request_type: type[RequestT],
    ) -> tuple[RequestT, Call]:
        tenant = await self.auth.tenant_of(context.invocation_metadata())
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
        self, context: grpc.aio.ServicerContext[Any, Any], method: str, error: BaseException
    ) -> grpc.StatusCode:
        code = status.status_code_of(error)
        if code in _LOGGED:
            extra = {"method": method, "request_id": _request_id(context), "code": code.name}
            if isinstance(error, ReportgridError) and code is not grpc.StatusCode.INTERNAL:
                logger.warning(error.message, extra=extra)
            else:
                logger.exception("unexpected error", extra=extra, exc_info=error)
        return code

    def _finish(
        self, method: str, code: str, started: float, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        self.metrics.record(method, code, time.perf_counter() - started)

    @staticmethod
    def _cancel_code(context: grpc.aio.ServicerContext[Any, Any]) -> str:
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"

    def unary(
        self, method: str, request_type: type[Message], handler: UnaryHandler
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def behavior(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            started = time.perf_counter()
            code = _OK
            try:
                request, call = await self._admit(context, raw, request_type)
                return await handler(request, call)
            except asyncio.CancelledError:
                code = self._cancel_code(context)
                raise
            except Exception as error:
                code = (await self._fail(context, method, error)).name
                await context.abort_with_status(status.to_rpc_status(error))
                raise  # abort_with_status always raises; this keeps the type checker honest
            finally:
                self._finish(method, code, started, context)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serialize
        )

    def stream(
        self, method: str, request_type: type[Message], handler: StreamHandler
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def behavior(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Message]:
            started = time.perf_counter()
            code = _OK
            try:
                request, call = await self._admit(context, raw, request_type)
                async for response in handler(request, call):
                    yield response
            except asyncio.CancelledError:
                code = self._cancel_code(context)
                raise
            except Exception as error:
                code = (await self._fail(context, method, error)).name
                await context.abort_with_status(status.to_rpc_status(error))
                raise
            finally:
                self._finish(method, code, started, context)

        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serialize
        )
