"""Issue 19.10: a request with hundreds of bad fields gets INVALID_ARGUMENT with a bounded
status that a client with grpc's default limits can receive, never RESOURCE_EXHAUSTED
"received metadata size exceeds hard limit" from the client's own transport."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from reportgrid.status import MAX_FIELD_VIOLATIONS
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import Edge

# grpc core refuses received metadata between its 8 KiB soft limit and 16 KiB randomly
# (grpc/grpc#32600): staying under the soft limit is what makes every call arrive.
SOFT_METADATA_LIMIT = 8 * 1024


def metadata_size(metadata: grpc.aio.Metadata) -> int:
    """HTTP/2's header-list size as grpc counts it (RFC 7540 6.5.2): name + value + 32 each."""
    total = 0
    for key, value in metadata:
        data = value if isinstance(value, bytes) else value.encode()
        total += len(key) + len(data) + 32
    return total


async def test_two_hundred_violations_arrive_bounded_at_a_default_client(edge: Edge) -> None:
    # Given a ListReports with 200 states that are not report states (200 violations)
    request = pb.ListReportsRequest(states=[999] * 200)
    # When a client with default channel options (edge.channel) sends it over a socket
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.ListReports(request, metadata=edge.auth(), timeout=5)
    # Then it is INVALID_ARGUMENT with the first violations and a count of the rest
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    listed = [v for v in bad.field_violations if v.field]
    assert 1 <= len(listed) <= MAX_FIELD_VIOLATIONS
    assert listed[0].field == "states[0]"
    rest = 200 - len(listed)
    assert bad.field_violations[-1].description == f"… and {rest} more field violations"
    # And the whole trailing metadata stays under grpc's soft limit
    trailing = err.trailing_metadata()
    assert trailing is not None
    assert metadata_size(trailing) < SOFT_METADATA_LIMIT, metadata_size(trailing)
    print(f"FIGURE 200 violations: {len(listed)} listed, trailers {metadata_size(trailing)} B")
