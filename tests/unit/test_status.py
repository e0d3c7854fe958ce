"""The one error <-> gRPC status mapping, with google.rpc details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from reportgrid import errors
from reportgrid.status import INTERNAL_MESSAGE, from_status, status_code_of, to_status


def _detail(status: object, cls: type) -> object:
    for packed in status.details:  # type: ignore[attr-defined]
        if packed.Is(cls.DESCRIPTOR):
            message = cls()
            packed.Unpack(message)
            return message
    raise AssertionError(f"no {cls.__name__} detail")


def test_invalid_argument_carries_field_violations() -> None:
    err = errors.InvalidArgument(
        [
            errors.FieldViolation("kind", "unknown kind 'x'"),
            errors.FieldViolation("params.top_n", "must be >= 1"),
        ]
    )
    status = to_status(err)
    assert status.code == code_pb2.INVALID_ARGUMENT
    bad = _detail(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [  # type: ignore[attr-defined]
        ("kind", "unknown kind 'x'"),
        ("params.top_n", "must be >= 1"),
    ]
    back = from_status(status)
    assert isinstance(back, errors.InvalidArgument)
    assert back.violations == err.violations


def test_unavailable_and_exhausted_carry_retry_info() -> None:
    for err in (
        errors.Unavailable("stream busy", retry_after=1.5),
        errors.ResourceExhausted("tenant over limit", retry_after=0.25, subject="t"),
    ):
        status = to_status(err)
        info = _detail(status, error_details_pb2.RetryInfo)
        delay = info.retry_delay  # type: ignore[attr-defined]
        assert delay.seconds + delay.nanos / 1e9 == pytest.approx(err.retry_after)
        back = from_status(status)
        assert type(back) is type(err)
        assert back.retry_after == pytest.approx(err.retry_after)  # type: ignore[attr-defined]


def test_not_found_carries_resource_info() -> None:
    status = to_status(errors.NotFound("report", "rpt_abc"))
    info = _detail(status, error_details_pb2.ResourceInfo)
    assert (info.resource_type, info.resource_name) == ("report", "rpt_abc")  # type: ignore[attr-defined]
    assert isinstance(from_status(status), errors.NotFound)


def test_unexpected_exceptions_never_leak_their_text() -> None:
    status = to_status(KeyError("secret internal detail"))
    assert status.code == code_pb2.INTERNAL
    assert status.message == INTERNAL_MESSAGE
    assert not status.details


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (
            errors.IllegalTransition("r", "SUCCEEDED", "RUNNING"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (errors.Conflict("raced"), grpc.StatusCode.ABORTED),
        (errors.Unauthenticated("no key"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.DeadlineExceeded("late"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.ReportFailure("BAD", "bad"), grpc.StatusCode.INTERNAL),
    ],
)
def test_codes(err: errors.ReportgridError, code: grpc.StatusCode) -> None:
    assert status_code_of(err) is code
    assert to_status(err).code == code.value[0]
