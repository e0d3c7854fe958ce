"""Issue 19 (Low): a flood of random API keys makes a bounded number of table reads, never
evicts a valid tenant's key, and is refused; the key cache is an LRU, not clear-at-limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from grpc_edge.auth import ApiKeyResolver
from reportgrid import apikeys
from reportgrid.settings import Settings
from reportgrid.v1 import reports_pb2 as pb
from tests.faults.conftest import rpc_details
from tests.integration.edge.conftest import TENANT, Edge, running_edge

FLOOD = 300
TTL = 8.0  # longer than the flood takes even on a loaded 2-core machine, shorter than the test
RATE, BURST = 5.0, 10.0


class KeyReads:
    """Every GetItem of an API key item the edge's own DynamoDB client makes."""

    def __init__(self) -> None:
        self.digests: list[str] = []

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        pk = params.get("Key", {}).get("pk", {}).get("S", "")
        if pk.startswith("apikey#"):
            self.digests.append(pk.removeprefix("apikey#"))


async def flood(edge: Edge, keys: list[str]) -> list[grpc.aio.AioRpcError]:
    async def one(key: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.ListReportKinds(
                pb.ListReportKindsRequest(), metadata=edge.auth(key), timeout=5
            )
        return caught.value

    refused: list[grpc.aio.AioRpcError] = []
    for start in range(0, len(keys), 50):  # 50 at a time: a bounded load on 127.0.0.1
        refused += await asyncio.gather(*(one(k) for k in keys[start : start + 50]))
    return refused


async def test_a_flood_of_random_keys_is_bounded_and_spares_valid_keys(
    settings: Settings, api_key: str
) -> None:
    async with running_edge(settings, api_key) as edge:
        # Caches far smaller than the flood: the old clear-at-limit would drop the valid key.
        resolver = ApiKeyResolver(
            edge.server.clients.dynamodb,
            settings.table_name,
            positive_ttl_seconds=TTL,
            positive_entries=8,
            negative_entries=16,
            unknown_lookups_per_second=RATE,
            unknown_lookup_burst=BURST,
        )
        edge.server.chain.auth = resolver
        reads = KeyReads()
        events = edge.server.clients.dynamodb.meta.events
        events.register("provide-client-params.dynamodb.GetItem", reads)
        try:
            valid = apikeys.key_hash(api_key)
            await edge.stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=edge.auth())
            assert reads.digests == [valid]

            # When 300 random well-formed keys arrive
            started = time.monotonic()
            refused = await flood(edge, [apikeys.generate_key() for _ in range(FLOOD)])
            elapsed = time.monotonic() - started
            # The valid tenant is served from the resolver's cache throughout (no read of its
            # key; asked directly, past the interceptor's own 1 s memo of resolved keys)
            assert await resolver.tenant_of(edge.auth()) == TENANT
            await edge.stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=edge.auth())

            # Then table reads are bounded by the budget, not by the flood
            flood_reads = len(reads.digests) - 1
            assert flood_reads <= BURST + RATE * elapsed + 1, (flood_reads, elapsed)
            assert reads.digests.count(valid) == 1
            # And every flood call is refused: the keys read are UNAUTHENTICATED, the ones
            # over the budget UNAVAILABLE with a RetryInfo (they were never checked)
            codes = [err.code() for err in refused]
            assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == flood_reads
            for err in refused:
                if err.code() is grpc.StatusCode.UNAVAILABLE:
                    assert "RetryInfo" in rpc_details(err)
                else:
                    assert err.code() is grpc.StatusCode.UNAUTHENTICATED
                    assert "unknown or revoked" in (err.details() or "")
            assert resolver.refused == FLOOD - flood_reads > 0
            print(f"FIGURE key flood: {FLOOD} keys in {elapsed:.2f} s, {flood_reads} reads")

            # A key seen valid is re-read when its entry expires, even with the budget spent
            await asyncio.sleep(TTL + 0.1)
            again = await flood(edge, [apikeys.generate_key() for _ in range(50)])
            assert grpc.StatusCode.UNAVAILABLE in {err.code() for err in again}  # budget spent
            assert await resolver.tenant_of(edge.auth()) == TENANT
            assert reads.digests.count(valid) == 2
        finally:
            events.unregister("provide-client-params.dynamodb.GetItem", reads)
