"""The edge's short memo of resolved `authorization` values (grpc_edge/interceptors.py):
bounded, and full of other keys it lets go of the oldest one, never of every tenant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from grpc_edge import interceptors
from grpc_edge.auth import Grant, TenantRateLimiter
from grpc_edge.interceptors import Chain
from grpc_edge.metrics import EdgeMetrics
from reportgrid import resources
from reportgrid.settings import load_settings


class CountingResolver:
    """Stands in for the table-backed resolver (a unit test of the memo above it)."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def grant_of(self, metadata: Sequence[tuple[str, Any]] | None) -> Grant:
        value = dict(metadata or ())["authorization"]
        self.lookups.append(value)
        return Grant(f"tenant-of-{value}", prefix="rg_test0000")


class Context:
    def __init__(self, key: str) -> None:
        self._metadata = (("authorization", key),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


async def test_many_keys_evict_the_oldest_memo_not_every_tenant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(interceptors, "_TENANT_MEMO_LIMIT", 3)
    resolver = CountingResolver()
    settings = load_settings(
        {resources.ENV.REGION: "eu-west-1", resources.ENV.ID_SECRETS: "s" * 32}
    )
    chain = Chain(
        service_name="test",
        auth=resolver,  # type: ignore[arg-type]
        limiter=TenantRateLimiter(100.0),
        metrics=EdgeMetrics(),
        settings=settings,
    )
    # Given a busy tenant's key resolved, then used again after the others arrived
    for key in ("busy", "k1", "k2", "busy"):
        await chain._tenant(Context(key))  # type: ignore[arg-type]
    assert resolver.lookups == ["busy", "k1", "k2"]  # the 2nd "busy" came from the memo
    # When more keys than the memo holds arrive
    await chain._tenant(Context("k3"))
    await chain._tenant(Context("k4"))
    # Then the memo stays bounded and the busy key, used most recently, is still in it
    assert len(chain._tenants) == 3
    resolver.lookups.clear()
    grant = await chain._tenant(Context("busy"))  # type: ignore[arg-type]
    assert grant.tenant == "tenant-of-busy"
    assert resolver.lookups == []
