"""The one mapping between Reportgrid errors and gRPC statuses with google.rpc details.

The edge turns a raised error into a status with `to_status`; the SDK turns a received
status back into the same error class with `from_status`, so a client catches
`reportgrid.errors.NotFound`, not a bare RpcError.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from reportgrid import errors

# Shown instead of the message of anything that is not a ReportgridError.
INTERNAL_MESSAGE = "internal error; it has been logged"

_CODES: dict[type[errors.ReportgridError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}


def status_code_of(error: BaseException) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    whole = math.floor(seconds)
    return error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    )


def to_status(error: BaseException) -> status_pb2.Status:
    """The google.rpc.Status for an error; non-Reportgrid errors become a generic INTERNAL."""
    code = status_code_of(error)
    if not isinstance(error, errors.ReportgridError) or isinstance(error, errors.Internal):
        return status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)
    details: list[any_pb2.Any] = []
    match error:
        case errors.InvalidArgument():
            details.append(
                _pack(
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field=v.field, description=v.description
                            )
                            for v in error.violations
                        ]
                    )
                )
            )
        case errors.NotFound():
            details.append(
                _pack(
                    error_details_pb2.ResourceInfo(
                        resource_type=error.resource_type,
                        resource_name=error.resource_name,
                        description=error.message,
                    )
                )
            )
        case errors.FailedPrecondition():
            details.append(
                _pack(
                    error_details_pb2.PreconditionFailure(
                        violations=[
                            error_details_pb2.PreconditionFailure.Violation(
                                type=error.type, subject=error.subject, description=error.message
                            )
                        ]
                    )
                )
            )
        case errors.ResourceExhausted():
            details.append(_pack(_retry_info(error.retry_after)))
            details.append(
                _pack(
                    error_details_pb2.QuotaFailure(
                        violations=[
                            error_details_pb2.QuotaFailure.Violation(
                                subject=error.subject, description=error.message
                            )
                        ]
                    )
                )
            )
        case errors.Unavailable():
            details.append(_pack(_retry_info(error.retry_after)))
        case _:
            pass
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def to_rpc_status(error: BaseException) -> grpc.Status:
    """The same status in the form `context.abort_with_status` takes."""
    return rpc_status.to_status(to_status(error))


def from_status(status: status_pb2.Status) -> errors.ReportgridError:
    """The Reportgrid error a received status stands for."""
    details = {d.TypeName(): d for d in status.details}
    message = status.message
    retry_after = 1.0
    if (packed := details.get("google.rpc.RetryInfo")) is not None:
        info = error_details_pb2.RetryInfo()
        packed.Unpack(info)
        retry_after = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    match status.code:
        case code_pb2.INVALID_ARGUMENT:
            bad = error_details_pb2.BadRequest()
            if (packed := details.get("google.rpc.BadRequest")) is not None:
                packed.Unpack(bad)
            violations = [
                errors.FieldViolation(v.field, v.description) for v in bad.field_violations
            ] or [errors.FieldViolation("", message)]
            return errors.InvalidArgument(violations)
        case code_pb2.NOT_FOUND:
            info_ = error_details_pb2.ResourceInfo()
            if (packed := details.get("google.rpc.ResourceInfo")) is not None:
                packed.Unpack(info_)
            return errors.NotFound(info_.resource_type or "resource", info_.resource_name)
        case code_pb2.FAILED_PRECONDITION:
            return errors.FailedPrecondition("", message)
        case code_pb2.ABORTED:
            return errors.Conflict(message)
        case code_pb2.UNAUTHENTICATED:
            return errors.Unauthenticated(message)
        case code_pb2.RESOURCE_EXHAUSTED:
            return errors.ResourceExhausted(message, retry_after=retry_after)
        case code_pb2.UNAVAILABLE:
            return errors.Unavailable(message, retry_after=retry_after)
        case code_pb2.DEADLINE_EXCEEDED:
            return errors.DeadlineExceeded(message)
        case _:
            return errors.Internal(message)


def from_rpc_error(error: grpc.RpcError) -> errors.ReportgridError:
    """The Reportgrid error for a failed call, using its details trailer when present."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        code = error.code()
        status = status_pb2.Status(code=code.value[0], message=error.details() or "")
    return from_status(status)
