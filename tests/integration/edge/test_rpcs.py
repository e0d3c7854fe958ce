"""Every RPC over a real socket, with plain stubs generated from the proto (no SDK)."""

from __future__ import annotations

import hashlib
import time
import zlib
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from reportgrid import ids, intents, records, resources, results
from reportgrid.engine.request import GenerateResult
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord, ResultInfo
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import (
    OTHER_TENANT,
    TENANT,
    Edge,
    put_record,
    stream_tasks,
    synthetic_request,
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def succeeded(
    settings: Settings,
    content: bytes,
    *,
    tenant: str = TENANT,
    report_id: str | None = None,
    **kw: object,
) -> ReportRecord:
    report_id = report_id or settings.id_codec().new(tenant, settings.region).value
    return ReportRecord(
        report_id=report_id,
        tenant=tenant,
        kind="synthetic",
        state=State.SUCCEEDED,
        created_ms=now_ms(),
        started_ms=now_ms(),
        ended_ms=now_ms(),
        expires_at=int(time.time()) + 3600,
        region=settings.region,
        result=ResultInfo(
            size_bytes=len(content),
            content_type="text/csv",
            sha256=hashlib.sha256(content).hexdigest(),
            row_count=content.count(b"\n"),
            generator_version=1,
            **kw,  # type: ignore[arg-type]
        ),
        revision=3,
    )


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT must carry google.rpc details"
    bad = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    return {v.field: v.description for v in bad.field_violations}


async def test_submit_then_get_watch_cancel_delete_a_queued_report(
    edge: Edge, aws: RegionResources
) -> None:
    # Given a submitted report
    reply = await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=5)
    assert reply.report_id.startswith("rpt_")
    assert reply.state == pb.REPORT_STATE_PENDING
    assert not reply.deduplicated
    # Then its task is in the stream and the report reads PENDING before any worker ran
    assert reply.report_id in {t.report_id for t in stream_tasks(aws)}
    got = await edge.stub.GetReport(
        pb.GetReportRequest(report_id=reply.report_id), metadata=edge.auth(), timeout=5
    )
    assert got.state == pb.REPORT_STATE_PENDING
    assert got.HasField("create_time")
    # Watch sends the current state first
    watch = edge.stub.WatchReport(
        pb.WatchReportRequest(report_id=reply.report_id), metadata=edge.auth(), timeout=5
    )
    first = (await watch.read()).report
    assert first.state == pb.REPORT_STATE_PENDING
    # Cancel of a queued report records the request
    cancelled = await edge.stub.CancelReport(
        pb.CancelReportRequest(report_id=reply.report_id), metadata=edge.auth(), timeout=5
    )
    assert cancelled.cancel_requested
    assert cancelled.state == pb.REPORT_STATE_PENDING
    # ... and the watcher sees the change
    second = (await watch.read()).report
    assert second.cancel_requested
    watch.cancel()
    # Delete, then it is gone
    await edge.stub.DeleteReport(
        pb.DeleteReportRequest(report_id=reply.report_id), metadata=edge.auth(), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.GetReport(
            pb.GetReportRequest(report_id=reply.report_id), metadata=edge.auth(), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # Deleting twice needs allow_missing
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.DeleteReport(
            pb.DeleteReportRequest(report_id=reply.report_id), metadata=edge.auth(), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await edge.stub.DeleteReport(
        pb.DeleteReportRequest(report_id=reply.report_id, allow_missing=True),
        metadata=edge.auth(),
        timeout=5,
    )


async def test_idempotent_submit_returns_the_same_id_deduplicated(edge: Edge) -> None:
    request = synthetic_request(idempotency_key="order-42")
    first = await edge.stub.SubmitReport(request, metadata=edge.auth(), timeout=5)
    again = await edge.stub.SubmitReport(request, metadata=edge.auth(), timeout=5)
    assert again.report_id == first.report_id
    assert (first.deduplicated, again.deduplicated) == (False, True)


async def test_a_succeeded_report_is_read_downloaded_and_deleted(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    # Given a SUCCEEDED report whose 2.5 MiB result lives inline (it compresses well)
    content = b"alpha,beta,gamma\n" * 160_000
    record = succeeded(settings, content, inline_compressed=zlib.compress(content, 9))
    put_record(aws, record)
    got = await edge.stub.GetReport(
        pb.GetReportRequest(report_id=record.report_id, include_content=True),
        metadata=edge.auth(),
        timeout=5,
    )
    assert got.state == pb.REPORT_STATE_SUCCEEDED
    assert got.result.download_required
    assert not got.result.content
    # Watch of a terminal report sends it once and ends
    watched = [
        r.report
        async for r in edge.stub.WatchReport(
            pb.WatchReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=5
        )
    ]
    assert [r.state for r in watched] == [pb.REPORT_STATE_SUCCEEDED]
    # Download streams 1 MiB chunks, metadata on the first only
    chunks = [
        c
        async for c in edge.stub.DownloadReport(
            pb.DownloadReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=5
        )
    ]
    assert len(chunks) == 3
    assert all(len(c.data) <= 1024 * 1024 for c in chunks)
    assert chunks[0].HasField("metadata")
    assert not chunks[1].HasField("metadata")
    assert chunks[0].metadata.sha256 == hashlib.sha256(content).hexdigest()
    assert b"".join(c.data for c in chunks) == content
    assert [c.offset for c in chunks] == [0, 1024 * 1024, 2 * 1024 * 1024]
    # Cancel of a terminal report returns it unchanged
    unchanged = await edge.stub.CancelReport(
        pb.CancelReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=5
    )
    assert unchanged.state == pb.REPORT_STATE_SUCCEEDED
    assert not unchanged.cancel_requested
    await edge.stub.DeleteReport(
        pb.DeleteReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.GetReport(
            pb.GetReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_result_in_s3_is_downloaded_and_deleted_with_every_version(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    # ~9 MiB that compresses poorly, so it goes to S3 and spans several chunks.
    content = hashlib.shake_256(b"seed").digest(9 * 1024 * 1024 + 7)
    report_id = settings.id_codec().new(TENANT, settings.region).value
    s3 = client("s3", aws.region, aws.endpoint_url)
    # Stored exactly as the workers store results (compressed, with its sha256).
    info = results.store_result(
        GenerateResult(data=content, row_count=1, content_type="text/csv"),
        report_id=report_id,
        generator_version=1,
        s3=s3,
        bucket=aws.results_bucket,
        region=aws.region,
    )
    key = resources.result_object_key(report_id)
    assert info.s3_key == key
    record = succeeded(
        settings, content, report_id=report_id, s3_key=key, s3_region=settings.region
    )
    put_record(aws, record)
    chunks = [
        c
        async for c in edge.stub.DownloadReport(
            pb.DownloadReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=10
        )
    ]
    assert b"".join(c.data for c in chunks) == content
    assert max(len(c.data) for c in chunks) == 1024 * 1024
    await edge.stub.DeleteReport(
        pb.DeleteReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=10
    )
    listing = s3.list_object_versions(Bucket=aws.results_bucket, Prefix=key)
    assert not listing.get("Versions")
    assert not listing.get("DeleteMarkers")


async def test_download_before_success_is_failed_precondition(edge: Edge) -> None:
    reply = await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in edge.stub.DownloadReport(
            pb.DownloadReportRequest(report_id=reply.report_id), metadata=edge.auth(), timeout=5
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PENDING" in (caught.value.details() or "")


async def test_cancel_of_a_running_report_is_its_own_item_and_leaves_the_report_alone(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    report_id = settings.id_codec().new(TENANT, settings.region).value
    running = ReportRecord(
        report_id=report_id,
        tenant=TENANT,
        kind="synthetic",
        state=State.RUNNING,
        created_ms=now_ms(),
        revision=4,
    )
    put_record(aws, running)
    reply = await edge.stub.CancelReport(
        pb.CancelReportRequest(report_id=report_id), metadata=edge.auth(), timeout=5
    )
    assert reply.cancel_requested
    assert reply.state == pb.REPORT_STATE_RUNNING
    ddb = client("dynamodb", aws.region, aws.endpoint_url)

    def item(pk: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = ddb.get_item(
            TableName=aws.table_name, Key={"pk": {"S": pk}}, ConsistentRead=True
        ).get("Item")
        return found

    # The report item is the workers' alone: the edge did not write it ...
    assert item("report#" + report_id) == records.to_item(running)
    # ... the request is an item of its own, with a TTL
    cancel = item("cancel#" + report_id)
    assert cancel is not None
    assert cancel["tenant"] == {"S": TENANT}
    assert int(cancel["expires_at"]["N"]) > time.time() + 24 * 3600
    # Every view shows it (Get, List), and asking again changes nothing
    got = await edge.stub.GetReport(
        pb.GetReportRequest(report_id=report_id), metadata=edge.auth(), timeout=5
    )
    assert got.cancel_requested
    listed = await edge.stub.ListReports(pb.ListReportsRequest(), metadata=edge.auth(), timeout=5)
    assert [(r.report_id, r.cancel_requested) for r in listed.reports] == [(report_id, True)]
    again = await edge.stub.CancelReport(
        pb.CancelReportRequest(report_id=report_id), metadata=edge.auth(), timeout=5
    )
    assert again.cancel_requested
    assert item("cancel#" + report_id) == cancel


async def test_a_report_with_a_tombstone_is_not_found_even_if_its_item_came_back(
    edge: Edge, aws: RegionResources, settings: Settings
) -> None:
    # Given a deleted report whose item a late worker write in another region brought back
    record = succeeded(settings, b"a,b\n", inline_compressed=zlib.compress(b"a,b\n"))
    put_record(aws, record)
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    ddb.put_item(
        TableName=aws.table_name,
        Item=intents.tombstone_item(record.report_id, TENANT, deleted_ms=now_ms()),
    )
    # Then every reader answers NOT_FOUND and List leaves it out
    for call in (
        edge.stub.GetReport(pb.GetReportRequest(report_id=record.report_id), metadata=edge.auth()),
        edge.stub.CancelReport(
            pb.CancelReportRequest(report_id=record.report_id), metadata=edge.auth()
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await edge.stub.ListReports(pb.ListReportsRequest(), metadata=edge.auth(), timeout=5)
    assert record.report_id not in [r.report_id for r in listed.reports]


async def test_list_report_kinds_and_reflection(edge: Edge) -> None:
    kinds = await edge.stub.ListReportKinds(
        pb.ListReportKindsRequest(), metadata=edge.auth(), timeout=5
    )
    assert "synthetic" in [k.name for k in kinds.kinds]
    reflection = reflection_pb2_grpc.ServerReflectionStub(edge.channel)
    replies = [
        r
        async for r in reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    ]
    names = {s.name for s in replies[0].list_services_response.service}
    assert "reportgrid.v1.ReportService" in names
    assert "grpc.health.v1.Health" in names


async def test_invalid_requests_name_every_bad_field(edge: Edge) -> None:
    request = pb.SubmitReportRequest(kind="synthetic", output_format=99)
    request.params.update({"cpu_ms": -1, "bogus": 1})
    request.ttl.seconds = 5
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.SubmitReport(request, metadata=edge.auth(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = violations(caught.value)
    assert {"output_format", "ttl"} <= set(fields)
    assert any(f.startswith("params") for f in fields)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.SubmitReport(pb.SubmitReportRequest(kind="nope"), metadata=edge.auth())
    assert set(violations(caught.value)) == {"kind"}

    for bad_id in ("", "rpt_short"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.GetReport(pb.GetReportRequest(report_id=bad_id), metadata=edge.auth())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(violations(caught.value)) == {"report_id"}

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.ListReports(pb.ListReportsRequest(page_size=-1), metadata=edge.auth())
    assert set(violations(caught.value)) == {"page_size"}


async def test_corrupt_protobuf_bytes_are_invalid_argument(edge: Edge) -> None:
    # A raw channel, no serializer: bytes that are not a SubmitReportRequest.
    call = edge.channel.unary_unary("/reportgrid.v1.ReportService/SubmitReport")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"\xff\xff\xff\xff\x0f garbage", metadata=edge.auth(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SubmitReportRequest" in (caught.value.details() or "")


async def test_multi_region_durability_is_refused_clearly(edge: Edge) -> None:
    request = synthetic_request(durability=pb.DURABILITY_MULTI_REGION)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.SubmitReport(request, metadata=edge.auth(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "DURABILITY_MULTI_REGION" in (caught.value.details() or "")


async def test_calls_without_a_valid_key_are_unauthenticated(
    edge: Edge, aws: RegionResources
) -> None:
    revoked = edge.key
    request = pb.ListReportKindsRequest()
    for metadata in (
        (),
        (("authorization", "Basic abc"),),
        (("authorization", "Bearer rg_" + "A" * 43),),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.ListReportKinds(request, metadata=metadata, timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Health needs no key
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = await health_pb2_grpc.HealthStub(edge.channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert revoked  # the valid key itself is exercised by every other test


async def test_another_tenants_and_forged_ids_are_not_found(
    edge: Edge, other_key: str, settings: Settings
) -> None:
    mine = await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=5)
    forged = ids.IdCodec([b"another-deployment-secret"]).new(TENANT, settings.region).value
    foreign = settings.id_codec().new(OTHER_TENANT, settings.region).value
    for report_id, key in ((mine.report_id, other_key), (forged, None), (foreign, None)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.GetReport(
                pb.GetReportRequest(report_id=report_id), metadata=edge.auth(key), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
