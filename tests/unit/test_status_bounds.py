"""Issue 19.10: whatever an error holds, its status fits in the trailers a default grpc client
accepts (under the 8 KiB soft limit), and the violations beyond the first are counted."""

from __future__ import annotations

import base64
import urllib.parse

from google.rpc import error_details_pb2

from reportgrid import errors
from reportgrid.status import MAX_FIELD_VIOLATIONS, from_status, to_status

SOFT_METADATA_LIMIT = 8 * 1024


def trailer_bytes(error: errors.ReportgridError) -> int:
    """What the status costs in trailers: grpc-message percent-encoded (worst case: every
    byte) and grpc-status-details-bin base64, each with HTTP/2's 32 bytes per entry."""
    status = to_status(error)
    message = urllib.parse.quote(status.message.encode(), safe="")
    details = base64.b64encode(status.SerializeToString())
    return len("grpc-message") + len(message) + len("grpc-status-details-bin") + len(details) + 64


def test_thousands_of_huge_non_ascii_violations_stay_under_the_soft_limit() -> None:
    violations = [
        errors.FieldViolation(f"params.ü{'é' * 500}[{i}]", "ß" * 5000) for i in range(5000)
    ]
    error = errors.InvalidArgument(violations)
    assert trailer_bytes(error) < SOFT_METADATA_LIMIT
    bad = error_details_pb2.BadRequest()
    to_status(error).details[0].Unpack(bad)
    listed = [v for v in bad.field_violations if v.field]
    assert 1 <= len(listed) <= MAX_FIELD_VIOLATIONS
    rest = 5000 - len(listed)
    assert bad.field_violations[-1].description == f"… and {rest} more field violations"
    # The SDK still rebuilds an InvalidArgument from it.
    assert isinstance(from_status(to_status(error)), errors.InvalidArgument)


def test_a_few_violations_pass_unchanged() -> None:
    violations = [errors.FieldViolation("kind", "unknown kind 'x'")] * 3
    bad = error_details_pb2.BadRequest()
    to_status(errors.InvalidArgument(violations)).details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("kind", "unknown kind 'x'")
    ] * 3


def test_every_kind_of_message_is_bounded() -> None:
    huge = "x" * 100_000
    for error in (
        errors.NotFound("report", huge),
        errors.FailedPrecondition(huge, huge),
        errors.ResourceExhausted(huge, retry_after=1.0, subject=huge),
        errors.Unavailable(huge),
        errors.Conflict(huge),
    ):
        assert trailer_bytes(error) < SOFT_METADATA_LIMIT, type(error).__name__
