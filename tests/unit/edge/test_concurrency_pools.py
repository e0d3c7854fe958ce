"""The edge's concurrency pools (grpc_edge/interceptors.py): a tenant exhausts only its own
share of a process, with a status that names the limit."""

from __future__ import annotations

import pytest
from google.rpc import error_details_pb2

from grpc_edge.interceptors import Pool
from reportgrid import status
from reportgrid.errors import ResourceExhausted


def test_a_tenant_at_its_share_is_refused_and_others_are_not() -> None:
    pool = Pool("calls", limit=10, tenant_limit=3, retry_after=0.05)
    # Given tenant A holding its whole share
    for _ in range(3):
        pool.enter("a")
    # When A asks for one more, and B asks
    with pytest.raises(ResourceExhausted) as caught:
        pool.enter("a")
    pool.enter("b")
    # Then only A is refused, with a QuotaFailure naming the tenant limit and a RetryInfo
    assert pool.by_tenant == {"a": 3, "b": 1}
    assert pool.tenant_shed == 1
    details = {d.TypeName(): d for d in status.to_status(caught.value).details}
    quota = error_details_pb2.QuotaFailure()
    details["google.rpc.QuotaFailure"].Unpack(quota)
    assert quota.violations[0].subject == "tenant:concurrent-calls"
    assert "limit of 3" in quota.violations[0].description
    assert "google.rpc.RetryInfo" in details


def test_leaving_frees_the_share_and_forgets_idle_tenants() -> None:
    pool = Pool("watches", limit=10, tenant_limit=1, retry_after=1.0)
    pool.enter("a")
    pool.leave("a")
    pool.enter("a")  # the slot is free again
    pool.leave("a")
    assert pool.by_tenant == {}  # no entry stays behind per tenant ever seen


def test_the_process_limit_is_separate_from_the_shares() -> None:
    pool = Pool("calls", limit=2, tenant_limit=5, retry_after=0.05)
    pool.in_flight = 2
    assert pool.full()
    assert pool.overloaded.code.name == "RESOURCE_EXHAUSTED"
