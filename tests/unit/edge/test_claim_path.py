"""The idempotency claim's transport: through aiobotocore until a claim got an answer (the
local region's IAM emulation is a botocore hook the lean path never passes), so a denied
grant keeps every claim there; and the request fingerprint ignores only the key."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from grpc_edge.idempotency import ClaimStore, fingerprint
from reportgrid.errors import Unavailable
from reportgrid.v1 import reports_pb2 as pb


class _Botocore:
    def __init__(self, *, denied: bool) -> None:
        self.denied = denied
        self.calls = 0

    async def put_item(self, **_: Any) -> Any:
        self.calls += 1
        if self.denied:
            raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutItem")
        return {}


class _Lean:
    def __init__(self) -> None:
        self.calls = 0

    async def call(self, *_: Any, **__: Any) -> tuple[int, bytes]:
        self.calls += 1
        return 200, b"{}"


@pytest.mark.parametrize("denied", [False, True])
async def test_claims_go_through_botocore_until_one_is_answered(denied: bool) -> None:
    botocore, lean = _Botocore(denied=denied), _Lean()
    store = ClaimStore(botocore, "t", region="us-east-1", lean=lean)  # type: ignore[arg-type]
    outcomes: list[bool | str] = []
    for n in range(3):
        try:
            claimed = await store.claim(
                "acme", f"k-{n}", "f", report_id=f"rpt_{n}", created_ms=1, deadline=None
            )
            outcomes.append(claimed.fresh)
        except Unavailable:
            outcomes.append("denied")
    if denied:
        assert (outcomes, botocore.calls, lean.calls) == (["denied"] * 3, 3, 0)
    else:
        assert (outcomes, botocore.calls, lean.calls) == ([True] * 3, 1, 2)


def test_the_fingerprint_covers_every_field_but_the_key_and_map_order() -> None:
    a = pb.SubmitReportRequest(kind="summary", idempotency_key="k-1")
    a.params.update({"x": 1, "y": [1, 2], "z": {"b": 1, "a": 2}})
    b = pb.SubmitReportRequest(kind="summary", idempotency_key="k-2")
    b.params.update({"z": {"a": 2, "b": 1}, "y": [1, 2], "x": 1})
    assert fingerprint(a) == fingerprint(b)
    assert a.idempotency_key == "k-1"  # restored
    b.params.update({"y": [1, 3]})
    assert fingerprint(a) != fingerprint(b)
    c = pb.SubmitReportRequest(kind="summary", idempotency_key="k-1", params=a.params)
    c.ttl.seconds = 60
    assert fingerprint(a) != fingerprint(c)
