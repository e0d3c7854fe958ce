"""The one mapping between Reportgrid errors and gRPC statuses with google.rpc details.

The edge turns a raised error into a status with `to_status`; the SDK turns a received
status back into the same error class with `from_status`, so a client catches
`reportgrid.errors.NotFound`, not a bare RpcError.
"""

from __future__ import annotations

import math
from typing import Final

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from reportgrid import errors

# Shown instead of the message of anything that is not a ReportgridError.
INTERNAL_MESSAGE = "internal error; it has been logged"

# A status travels in the trailers, twice over: `grpc-message` (percent-encoded, so up to 3x
# for non-ASCII text) and `grpc-status-details-bin` (the Status proto, message included,
# base64: 4/3x). grpc core refuses received metadata above 16 KiB by default and, between its
# 8 KiB soft limit and that, randomly (grpc/grpc#32600; a client then sees RESOURCE_EXHAUSTED
# "received metadata size exceeds hard limit", grpc/grpc#37852). These bounds keep a whole
# status under 8 KiB: 3 x 512 + 4/3 x (512 + 3,072) + header names < 6.5 KiB.
MAX_STATUS_MESSAGE_BYTES: Final = 512
MAX_FIELD_VIOLATIONS: Final = 20  # then one more violation counts the rest
MAX_VIOLATION_FIELD_BYTES: Final = 128
MAX_VIOLATION_DESCRIPTION_BYTES: Final = 256
MAX_DETAIL_BYTES: Final = 3072  # the serialized details, all of them together
MAX_NAME_BYTES: Final = 256  # a resource name or subject in a detail

_CODES: dict[type[errors.ReportgridError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
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


def _field_violations(
    violations: tuple[errors.FieldViolation, ...],
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The first violations that fit MAX_FIELD_VIOLATIONS and MAX_DETAIL_BYTES, each cut to
    its bounds, then one that counts the rest: a request with thousands of bad fields still
    gets a status every client can receive."""
    kept: list[error_details_pb2.BadRequest.FieldViolation] = []
    size = 0
    for v in violations[:MAX_FIELD_VIOLATIONS]:
        item = error_details_pb2.BadRequest.FieldViolation(
            field=errors.bounded(v.field, MAX_VIOLATION_FIELD_BYTES),
            description=errors.bounded(v.description, MAX_VIOLATION_DESCRIPTION_BYTES),
        )
        size += item.ByteSize() + 4  # its tag and length in the BadRequest
        if size > MAX_DETAIL_BYTES - 128:  # room kept for the count and the Any wrapper
            break
        kept.append(item)
    if rest := len(violations) - len(kept):
        kept.append(
            error_details_pb2.BadRequest.FieldViolation(
                field="", description=f"… and {rest} more field violations"
            )
        )
    return kept


def to_status(error: BaseException) -> status_pb2.Status:
    """The google.rpc.Status for an error; non-Reportgrid errors become a generic INTERNAL."""
    code = status_code_of(error)
    if not isinstance(error, errors.ReportgridError) or isinstance(error, errors.Internal):
        return status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)
    message = errors.bounded(error.message, MAX_STATUS_MESSAGE_BYTES)
    details: list[any_pb2.Any] = []
    match error:
        case errors.InvalidArgument():
            details.append(
                _pack(
                    error_details_pb2.BadRequest(
                        field_violations=_field_violations(error.violations)
                    )
                )
            )
        case errors.NotFound():
            details.append(
                _pack(
                    error_details_pb2.ResourceInfo(
                        resource_type=error.resource_type,
                        resource_name=errors.bounded(error.resource_name, MAX_NAME_BYTES),
                        description=message,
                    )
                )
            )
        case errors.FailedPrecondition():
            details.append(
                _pack(
                    error_details_pb2.PreconditionFailure(
                        violations=[
                            error_details_pb2.PreconditionFailure.Violation(
                                type=error.type,
                                subject=errors.bounded(error.subject, MAX_NAME_BYTES),
                                description=message,
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
                                subject=errors.bounded(error.subject, MAX_NAME_BYTES),
                                description=message,
                            )
                        ]
                    )
                )
            )
        case errors.Unavailable():
            details.append(_pack(_retry_info(error.retry_after)))
        case _:
            pass
    return status_pb2.Status(code=code.value[0], message=message, details=details)


def to_rpc_status(error: BaseException) -> grpc.Status:
    """The same status in the form `context.abort_with_status` takes."""
    return rpc_status.to_status(to_status(error))


def from_status(status: status_pb2.Status) -> errors.ReportgridError:  # noqa: PLR0912 -- a case a code
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
            return errors.InvalidArgument(_violations(details, message))
        case code_pb2.OUT_OF_RANGE:
            return errors.OutOfRange(_violations(details, message))
        case code_pb2.NOT_FOUND:
            info_ = error_details_pb2.ResourceInfo()
            if (packed := details.get("google.rpc.ResourceInfo")) is not None:
                packed.Unpack(info_)
            return errors.NotFound(info_.resource_type or "resource", info_.resource_name)
        case code_pb2.FAILED_PRECONDITION:
            return _precondition(details, message)
        case code_pb2.ALREADY_EXISTS:
            # Reportgrid sends FAILED_PRECONDITION for a reused key; ALREADY_EXISTS is how
            # other idempotent APIs (and proxies in front of ours) say it: Submit is the
            # one call that creates anything.
            return errors.IdempotencyKeyReused(message)
        case code_pb2.ABORTED:
            return errors.Conflict(message)
        case code_pb2.UNAUTHENTICATED:
            return errors.Unauthenticated(message)
        case code_pb2.PERMISSION_DENIED:
            return errors.PermissionDenied(message)
        case code_pb2.RESOURCE_EXHAUSTED:
            return errors.ResourceExhausted(message, retry_after=retry_after)
        case code_pb2.UNAVAILABLE:
            return errors.Unavailable(message, retry_after=retry_after)
        case code_pb2.DEADLINE_EXCEEDED:
            return errors.DeadlineExceeded(message)
        case _:
            return errors.Internal(message)


def _precondition(details: dict[str, any_pb2.Any], message: str) -> errors.FailedPrecondition:
    """The first PreconditionFailure violation's subject and type; a reused idempotency
    key as its own class."""
    failure = error_details_pb2.PreconditionFailure()
    if (packed := details.get("google.rpc.PreconditionFailure")) is not None:
        packed.Unpack(failure)
    if not failure.violations:
        return errors.FailedPrecondition("", message)
    first = failure.violations[0]
    if first.type == errors.IDEMPOTENCY_KEY_REUSED:
        return errors.IdempotencyKeyReused(message)
    return errors.FailedPrecondition(first.subject, message, type_=first.type or "STATE")


def _violations(details: dict[str, any_pb2.Any], message: str) -> list[errors.FieldViolation]:
    bad = error_details_pb2.BadRequest()
    if (packed := details.get("google.rpc.BadRequest")) is not None:
        packed.Unpack(bad)
    return [errors.FieldViolation(v.field, v.description) for v in bad.field_violations] or [
        errors.FieldViolation("", message)
    ]


def from_rpc_error(error: grpc.RpcError) -> errors.ReportgridError:
    """The Reportgrid error for a failed call, using its details trailer when present."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        code = error.code()
        status = status_pb2.Status(code=code.value[0], message=error.details() or "")
    return from_status(status)
