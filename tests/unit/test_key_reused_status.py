"""A reused idempotency key reaches the SDK as its own error class, `IdempotencyKeyReused`
(from FAILED_PRECONDITION of type IDEMPOTENCY_KEY_REUSED, or ALREADY_EXISTS), naming the
key, and the CLI exits with its own code."""

from __future__ import annotations

from google.rpc import code_pb2, status_pb2

from grpc_edge import idempotency
from reportgrid import errors
from reportgrid.cli.commands import describe_error
from reportgrid.cli.exit_codes import Exit
from reportgrid.status import from_status, to_status


def _claim() -> idempotency.Claim:
    return idempotency.Claim("rpt_first", "j1:f", 1, "us-east-1", 2)


def test_the_edges_refusal_comes_back_as_idempotency_key_reused() -> None:
    status = to_status(idempotency.reused("order-42", _claim()))
    assert status.code == code_pb2.FAILED_PRECONDITION
    back = from_status(status)
    assert isinstance(back, errors.IdempotencyKeyReused)
    assert isinstance(back, errors.FailedPrecondition)  # what callers caught before
    assert (back.subject, back.type) == ("idempotency_key", "IDEMPOTENCY_KEY_REUSED")
    assert "'order-42'" in back.message
    assert "rpt_first" in back.message


def test_already_exists_is_idempotency_key_reused_naming_the_key_the_sdk_sent() -> None:
    back = from_status(status_pb2.Status(code=code_pb2.ALREADY_EXISTS, message="exists"))
    assert isinstance(back, errors.IdempotencyKeyReused)
    named = errors.IdempotencyKeyReused(back.message, key="order-42")  # as submit() does
    assert named.key == "order-42"
    assert named.message == "idempotency_key 'order-42': exists"


def test_another_precondition_keeps_its_subject_and_type() -> None:
    status = to_status(errors.FailedPrecondition("durability", "no peer", type_="DURABILITY"))
    back = from_status(status)
    assert type(back) is errors.FailedPrecondition
    assert (back.subject, back.type) == ("durability", "DURABILITY")


def test_the_cli_exits_with_its_own_code_and_names_the_key() -> None:
    code, line = describe_error(from_status(to_status(idempotency.reused("order-42", _claim()))))
    assert code == Exit.IDEMPOTENCY_KEY_REUSED
    assert int(code) == 10  # docs/USAGE.md lists it
    assert "IDEMPOTENCY_KEY_REUSED" in line
    assert "'order-42'" in line
    assert "--idempotency-key" in line
