"""Why a report did not succeed, as one google.rpc.Status (Report.error), the way
google.longrunning's Operation.error says it: a canonical code, a message for the user, and
a google.rpc.ErrorInfo whose `reason` is the stable machine-readable name.

The report item keeps the worker's reason and message (reportgrid/records.py); the Status
is made from them on read, so the mapping below can change without rewriting any item.
docs/USAGE.md ("When a report does not succeed") shows the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from reportgrid.states import State
from reportgrid.wire import ERROR_DOMAIN

CANCELLED_BY_REQUEST: Final = "CANCELLED_BY_REQUEST"
RETENTION_EXPIRED: Final = "RETENTION_EXPIRED"
# A FAILED report whose reason this table does not know (written by a newer worker).
UNKNOWN_REASON_CODE: Final = code_pb2.UNKNOWN

# The worker's reason -> the canonical code (AIP-193's meanings). The question each answers:
# what must the user change before the same report can succeed?
FAILURE_CODES: Final[Mapping[str, int]] = {
    # The request itself (its params, or params that do not fit its data): change it.
    "INVALID_PARAMS": code_pb2.INVALID_ARGUMENT,
    "INVALID_VALUE": code_pb2.INVALID_ARGUMENT,
    "MISSING_COLUMN": code_pb2.INVALID_ARGUMENT,
    "INVALID_COLUMN_TYPE": code_pb2.INVALID_ARGUMENT,
    "VALUE_OUT_OF_RANGE": code_pb2.INVALID_ARGUMENT,
    # The input object is missing or unreadable: fix the data, the request may stay.
    "INPUT_UNREADABLE": code_pb2.FAILED_PRECONDITION,
    # The task named an S3 input outside the tenant's prefix.
    "INPUT_FORBIDDEN": code_pb2.PERMISSION_DENIED,
    # Over a run-time limit (reportgrid/limits.py): a smaller report would run.
    "INPUT_TOO_LARGE": code_pb2.RESOURCE_EXHAUSTED,
    "RESOURCE_LIMIT": code_pb2.RESOURCE_EXHAUSTED,
    "TIME_LIMIT_EXCEEDED": code_pb2.DEADLINE_EXCEEDED,
    # Our side: nothing in the request is wrong; submitting again may succeed.
    "GENERATOR_FAILED": code_pb2.INTERNAL,
    "WORKER_ERROR": code_pb2.INTERNAL,
    "RETRIES_EXHAUSTED": code_pb2.INTERNAL,
    "POISON_TASK": code_pb2.INTERNAL,
}

_CANCELLED_MESSAGE: Final = "the report was cancelled on request"
_EXPIRED_MESSAGE: Final = "the report's retention has passed; its result is gone"


def failure_code(reason: str) -> int:
    """The google.rpc.Code of a FAILED report's reason."""
    return FAILURE_CODES.get(reason, UNKNOWN_REASON_CODE)


def _status(code: int, message: str, reason: str, metadata: Mapping[str, str]) -> status_pb2.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    return status_pb2.Status(code=code, message=message, details=[info])


def report_status(
    state: State, *, ended_state: State, reason: str, message: str
) -> status_pb2.Status | None:
    """Report.error for a report in `state` (its effective state) whose item says it ended
    `ended_state` with the worker's `reason` and `message`; None when it has no error
    (PENDING, RUNNING, SUCCEEDED)."""
    if state is State.FAILED:
        return _status(failure_code(reason), message, reason, {})
    if state is State.CANCELLED:
        return _status(code_pb2.CANCELLED, _CANCELLED_MESSAGE, CANCELLED_BY_REQUEST, {})
    if state is State.EXPIRED:
        metadata = {"ended_state": ended_state.value}
        if ended_state is State.FAILED and reason:
            metadata["failure_reason"] = reason
        return _status(code_pb2.FAILED_PRECONDITION, _EXPIRED_MESSAGE, RETENTION_EXPIRED, metadata)
    return None
