"""What the edge makes of what operators set: expired, revoked and disabled keys stop working
within the documented time; a tenant's quotas on each submit; Delete/Cancel in the audit
log with the key's prefix; last use recorded without a write per call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest

from grpc_edge import auth
from reportgrid import apikeys, tenants
from reportgrid.cli.admin_store import AdminStore
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.settings import Settings
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import Edge, running_edge, stream_tasks, synthetic_request

# The interceptors' memo of a resolved key (grpc_edge/interceptors.py) on top of the cache.
_MEMO_SECONDS = 1.0


def _metadata(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


async def _code(edge: Edge, secret: str) -> tuple[grpc.StatusCode, str]:
    try:
        await edge.stub.ListReportKinds(
            pb.ListReportKindsRequest(), metadata=_metadata(secret), timeout=5
        )
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def _refused_after(edge: Edge, secret: str, change: Callable[[], None]) -> float:
    """Seconds from `change()` until the key is refused (polled every 50 ms)."""
    changed = time.monotonic()
    change()
    while (await _code(edge, secret))[0] is grpc.StatusCode.OK:
        assert time.monotonic() - changed < 10, "the key kept working"
        await asyncio.sleep(0.05)
    return time.monotonic() - changed


async def test_revoked_expired_and_disabled_keys_stop_within_the_cache_ttl(
    settings: Settings, store: AdminStore
) -> None:
    store.create_tenant("acme", quotas=tenants.DEFAULT_QUOTAS)
    store.create_tenant("globex", quotas=tenants.DEFAULT_QUOTAS)
    revoked = store.create_key("acme", expires_ms=None)
    disabled = store.create_key("globex", expires_ms=None)
    async with running_edge(settings, revoked.secret) as edge:
        # The documented revocation time is the resolver's cache TTL (30 s); this edge's is
        # shortened so the test does not wait for it.
        assert auth.POSITIVE_TTL_SECONDS == 30.0
        ttl = 1.0
        edge.server.chain.auth._positive_ttl = ttl
        for key in (revoked, disabled):
            assert (await _code(edge, key.secret))[0] is grpc.StatusCode.OK

        took = await _refused_after(
            edge, revoked.secret, lambda: store.revoke_key("acme", revoked.record.prefix)
        )
        assert took <= ttl + _MEMO_SECONDS + 0.5
        assert await _code(edge, revoked.secret) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "the API key is unknown or revoked",
        )

        took = await _refused_after(
            edge, disabled.secret, lambda: store.update_tenant("globex", disabled=True)
        )
        assert took <= ttl + _MEMO_SECONDS + 0.5
        assert await _code(edge, disabled.secret) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "tenant 'globex' is disabled; ask your operator",
        )

        # An expired key is refused whatever is cached: within the memo of its expiry
        expiring = store.create_key("acme", expires_ms=tenants.now_ms() + 1000)
        assert (await _code(edge, expiring.secret))[0] is grpc.StatusCode.OK  # now cached
        assert expiring.record.expires_ms is not None
        await _refused_after(edge, expiring.secret, lambda: None)
        late = time.time() - expiring.record.expires_ms / 1000
        assert late <= _MEMO_SECONDS + 0.3
        code, message = await _code(edge, expiring.secret)
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert f"the API key {expiring.record.prefix} expired at " in message


def _csv_request(data: bytes, **kwargs: object) -> pb.SubmitReportRequest:
    request = pb.SubmitReportRequest(
        kind="summary",
        input=pb.ReportInput(format=pb.DATA_FORMAT_CSV, inline_data=data),
        **kwargs,  # type: ignore[arg-type]
    )
    request.params.update({"aggregates": [{"op": "count"}]})
    return request


async def _submit_error(edge: Edge, request: pb.SubmitReportRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.SubmitReport(request, metadata=edge.auth(), timeout=5)
    return caught.value.code(), caught.value.details() or ""


async def test_a_tenants_quotas_hold_on_every_submit(
    settings: Settings, store: AdminStore, aws: RegionResources
) -> None:
    quotas = tenants.Quotas(
        submit_per_second=3.0,
        max_inline_bytes=64,
        retention_default_seconds=600,
        retention_max_seconds=3600,
    )
    store.create_tenant("acme", quotas=quotas)
    key = store.create_key("acme", expires_ms=None)
    small = b"a,b\n1,2\n"
    async with running_edge(settings, key.secret) as edge:
        # Inline input over the tenant's quota (under the service's own limit)
        code, message = await _submit_error(edge, _csv_request(b"a,b\n" + b"1,2\n" * 40))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 64 bytes (its quota)" in message
        # A ttl over the tenant's retention
        too_long = _csv_request(small)
        too_long.ttl.seconds = 7200
        code, message = await _submit_error(edge, too_long)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 3600 s (its quota)" in message

        # No ttl: the tenant's default retention goes with the task
        first = time.monotonic()
        reply = await edge.stub.SubmitReport(_csv_request(small), metadata=edge.auth(), timeout=5)
        (task,) = [t for t in stream_tasks(aws) if t.report_id == reply.report_id]
        assert task.request.ttl.seconds == 600

        # The submit rate: a burst of one second's worth (3), then refused
        codes = []
        for _ in range(8):
            try:
                await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=5)
                codes.append((grpc.StatusCode.OK, ""))
            except grpc.aio.AioRpcError as error:
                codes.append((error.code(), error.details() or ""))
        # The first submit and the loop's: the burst, + what refilled meanwhile
        admitted = 1 + sum(code is grpc.StatusCode.OK for code, _ in codes)
        assert 3 <= admitted <= 3 + int(3 * (time.monotonic() - first))
        assert {c for c in codes if c[0] is not grpc.StatusCode.OK} == {
            (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "tenant 'acme' is over its submit rate quota of 3 a second (fleet-wide)",
            )
        }


async def test_delete_and_cancel_are_audited_and_use_is_recorded_coarsely(
    settings: Settings, store: AdminStore, aws: RegionResources
) -> None:
    store.create_tenant("acme", quotas=tenants.DEFAULT_QUOTAS)
    key = store.create_key("acme", expires_ms=None)
    async with running_edge(settings, key.secret) as edge:
        reply = await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=5)
        rid = reply.report_id
        for call in (
            edge.stub.CancelReport(pb.CancelReportRequest(report_id=rid), metadata=edge.auth()),
            edge.stub.DeleteReport(pb.DeleteReportRequest(report_id=rid), metadata=edge.auth()),
        ):
            await call
        await _until(lambda: _last_used(aws, key.secret))
        first_use = _last_used(aws, key.secret)
        # More calls do not write again within the interval (apikeys.LAST_USED_INTERVAL_MS)
        for _ in range(3):
            await edge.stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=edge.auth())
        await asyncio.sleep(0.3)
        assert _last_used(aws, key.secret) == first_use
        # Past the interceptors' 1 s memo too: each resolution is not a write
        for _ in range(3):
            await edge.server.chain.auth.grant_of(edge.auth())
        assert edge.server.chain.auth.use_writes == 1
        assert edge.server.service.audit.written == 2

    found = [r for r in store.audit("acme", tenants.now_ms() - 60_000) if r.action[:7] == "report."]
    assert [(r.action, r.detail) for r in found] == [
        ("report.delete", {"report_id": rid, "changed": True}),
        ("report.cancel", {"report_id": rid, "changed": True}),
    ]
    assert {r.actor for r in found} == {f"key:{key.record.prefix}"}
    assert {r.region for r in found} == {settings.region}
    (listed,) = store.list_keys("acme")
    assert listed.last_used_ms == first_use


def _last_used(aws: RegionResources, secret: str) -> int | None:
    item = client("dynamodb", aws.region, aws.endpoint_url).get_item(
        TableName=aws.table_name, Key=apikeys.item_key(apikeys.key_hash(secret))
    )["Item"]
    return int(item["last_used_ms"]["N"]) if "last_used_ms" in item else None


async def _until(check: Callable[[], object]) -> None:
    deadline = time.monotonic() + 5.0
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
