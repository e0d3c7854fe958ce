"""Page tokens and the circuit breaker: pure logic."""

from __future__ import annotations

import asyncio
import time

import pytest

from grpc_edge.breaker import BreakerOpen, CircuitBreaker
from grpc_edge.tokens import PageTokens
from reportgrid.errors import InvalidArgument

SECRET = b"0123456789abcdef-secret"


def test_a_token_round_trips_for_its_tenant_and_filters() -> None:
    tokens = PageTokens([SECRET])
    token = tokens.issue("acme", [None, "", "0000000000001#rpt_x"], "f1")
    cursor = tokens.read("acme", token, "f1", 3)
    assert cursor.shards == (None, "", "0000000000001#rpt_x")


@pytest.mark.parametrize(
    ("tenant", "filters", "now_offset", "message"),
    [
        ("globex", "f1", 0, "not a page token"),
        ("acme", "f2", 0, "other filters"),
        ("acme", "f1", 25 * 3600, "expired"),
    ],
)
def test_tokens_of_other_tenants_filters_or_past_expiry_are_refused(
    tenant: str, filters: str, now_offset: int, message: str
) -> None:
    tokens = PageTokens([SECRET])
    token = tokens.issue("acme", [None], "f1")
    with pytest.raises(InvalidArgument, match=message) as caught:
        tokens.read(tenant, token, filters, 1, now=time.time() + now_offset)
    assert caught.value.violations[0].field == "page_token"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = PageTokens([b"another-secret-0123456"]).issue("acme", [None], "f1")
    with pytest.raises(InvalidArgument):
        PageTokens([SECRET]).read("acme", token, "f1", 1)


def test_a_token_signed_before_a_rotation_reads_after_it_until_its_secret_is_dropped() -> None:
    # Given a token issued with the old secret, then the new secret put first
    token = PageTokens([SECRET]).issue("acme", [None, "x"], "f1")
    rotated = PageTokens([b"the-new-secret-0123456789", SECRET])
    # Then it still reads, tokens are now signed with the new secret, and once the old
    # secret is dropped the old token no longer reads
    assert rotated.read("acme", token, "f1", 2).shards == (None, "x")
    fresh = rotated.issue("acme", [None], "f1")
    assert PageTokens([b"the-new-secret-0123456789"]).read("acme", fresh, "f1", 1)
    with pytest.raises(InvalidArgument):
        PageTokens([b"the-new-secret-0123456789"]).read("acme", token, "f1", 2)


async def test_the_breaker_opens_after_failures_and_recovers_after_a_trial() -> None:
    breaker = CircuitBreaker("t", timeout=0.05, failure_threshold=2, reset_after=0.1)

    async def hang() -> None:
        await asyncio.sleep(10)

    async def ok() -> str:
        return "ok"

    for _ in range(2):
        with pytest.raises(TimeoutError):
            await breaker.call(hang)
    assert breaker.is_open
    started = time.monotonic()
    with pytest.raises(BreakerOpen):
        await breaker.call(ok)
    assert time.monotonic() - started < 0.01  # refused at once, not after a timeout
    await asyncio.sleep(0.12)
    assert await breaker.call(ok) == "ok"
    assert not breaker.is_open
