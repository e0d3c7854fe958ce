"""Bad input against the in-process edge: 11 corrupt protobuf bytes on every method,
12 invalid fields (the right code with BadRequest field violations), 14 auth (missing,
malformed, unknown and revoked keys; another tenant's id is NOT_FOUND like a missing one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from grpc_edge.auth import ApiKeyResolver
from reportgrid import apikeys, ids
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.settings import Settings
from reportgrid.v1 import reports_pb2 as pb
from tests.faults.conftest import METHODS, SERVICE, STREAMING, rpc_details
from tests.integration.edge.conftest import (
    OTHER_TENANT,
    TENANT,
    Edge,
    put_api_key,
    running_edge,
    synthetic_request,
)

# Byte strings that are not a valid message of ANY type: a truncated varint, a length that
# runs past the end, an end-group tag without a start, an invalid wire type.
CORRUPT = (b"\x08", b"\x0a\x05ab", b"\x0c", b"\x0f", b"\xff\xff\xff\xff\x0f garbage")


@pytest.fixture
async def edge(settings: Settings, api_key: str) -> Any:
    async with running_edge(settings, api_key) as running:
        yield running


async def call_raw(edge: Edge, method: str, payload: bytes, key: str | None = None) -> None:
    """Send raw bytes to a method (no serializer) and read the whole answer."""
    path = SERVICE + method
    metadata = edge.auth(key)
    if method in STREAMING:
        stream = edge.channel.unary_stream(path)(payload, metadata=metadata, timeout=5)
        async for _ in stream:
            pass
    else:
        await edge.channel.unary_unary(path)(payload, metadata=metadata, timeout=5)


async def test_corrupt_bytes_on_every_method_are_invalid_argument(
    edge: Edge, figure: Callable[..., None]
) -> None:
    codes: dict[str, int] = {}
    for method in METHODS:
        for payload in CORRUPT:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call_raw(edge, method, payload)
            err = caught.value
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, payload, err)
            text = err.details() or ""
            assert "Traceback" not in text
            assert "DecodeError" not in text
            assert "BadRequest" in rpc_details(err)
            codes[err.code().name] = codes.get(err.code().name, 0) + 1
    figure(
        "11 corrupt protobuf",
        methods=len(METHODS),
        payloads=len(CORRUPT),
        invalid_argument=codes.get("INVALID_ARGUMENT", 0),
        unknown=0,
    )


def _violations(err: grpc.aio.AioRpcError) -> set[str]:
    bad = rpc_details(err).get("BadRequest")
    return {v.field for v in bad.field_violations} if bad is not None else set()


async def test_invalid_fields_get_the_right_code_and_field_violations(
    edge: Edge, settings: Settings, figure: Callable[..., None]
) -> None:
    forged = ids.IdCodec([b"another-deployment-secret-0123"]).new(TENANT, settings.region).value
    foreign = settings.id_codec().new(OTHER_TENANT, settings.region).value
    too_large = pb.SubmitReportRequest(kind="summary")
    too_large.params.update({"aggregates": [{"op": "count"}]})
    too_large.input.format = pb.DATA_FORMAT_CSV
    too_large.input.inline_data = b"a\n" + b"1\n" * 140_000  # 280 KiB: under the gRPC limit
    bad_uri = pb.SubmitReportRequest(kind="summary")
    bad_uri.params.update({"aggregates": [{"op": "count"}]})
    bad_uri.input.format = pb.DATA_FORMAT_CSV
    bad_uri.input.s3_uri = "http://bucket/key"
    bad_params = synthetic_request()
    bad_params.params.update({"output_rows": -5, "surprise": True})
    stub = edge.stub
    cases: list[tuple[str, Any, grpc.StatusCode, set[str]]] = [
        (
            "unknown kind",
            stub.SubmitReport(pb.SubmitReportRequest(kind="nope"), metadata=edge.auth()),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"kind"},
        ),
        (
            "bad params",
            stub.SubmitReport(bad_params, metadata=edge.auth()),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"params.output_rows", "params"},
        ),
        (
            "negative page size",
            stub.ListReports(pb.ListReportsRequest(page_size=-1), metadata=edge.auth()),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"page_size"},
        ),
        (
            "forged page token",
            stub.ListReports(
                pb.ListReportsRequest(page_token="AAAA" + "x" * 40), metadata=edge.auth()
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"page_token"},
        ),
        (
            "malformed report id",
            stub.GetReport(pb.GetReportRequest(report_id="rpt_short"), metadata=edge.auth()),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"report_id"},
        ),
        (
            "forged report id",
            stub.GetReport(pb.GetReportRequest(report_id=forged), metadata=edge.auth()),
            grpc.StatusCode.NOT_FOUND,
            set(),
        ),
        (
            "foreign report id",
            stub.GetReport(pb.GetReportRequest(report_id=foreign), metadata=edge.auth()),
            grpc.StatusCode.NOT_FOUND,
            set(),
        ),
        (
            "bad S3 URI",
            stub.SubmitReport(bad_uri, metadata=edge.auth()),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"input.s3_uri"},
        ),
        (
            "input too large",
            stub.SubmitReport(too_large, metadata=edge.auth()),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"input.inline_data"},
        ),
        (
            "too many labels",
            stub.SubmitReport(
                synthetic_request(labels={f"k{i}": "v" for i in range(65)}), metadata=edge.auth()
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"labels"},
        ),
        (
            "bad label key and value",
            stub.SubmitReport(
                synthetic_request(labels={"Team": "x", "env": "Prod!"}), metadata=edge.auth()
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"labels[Team]", "labels[env]"},
        ),
        (
            "bad view on get",
            stub.GetReport(
                pb.GetReportRequest(report_id=foreign, view=9),
                metadata=edge.auth(),  # type: ignore[arg-type]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"view"},
        ),
        (
            "bad view on list",
            stub.ListReports(pb.ListReportsRequest(view=9), metadata=edge.auth()),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            {"view"},
        ),
        (
            "bad label filter key",
            stub.ListReports(pb.ListReportsRequest(labels={"9lives": "x"}), metadata=edge.auth()),
            grpc.StatusCode.INVALID_ARGUMENT,
            {"labels[9lives]"},
        ),
    ]
    # Webhooks (issue 17): each bad notify URL names notify.url.
    for label, url in (
        ("http notify URL", "http://hooks.example.com/h"),
        ("private-address notify URL", "https://10.0.0.1/h"),
        ("metadata notify URL", "https://169.254.169.254/latest/meta-data"),
        ("too long notify URL", "https://hooks.example.com/" + "a" * 2048),
        ("notify URL with userinfo", "https://user:pw@hooks.example.com/h"),
    ):
        bad_notify = synthetic_request()
        bad_notify.notify.url = url
        cases.append(
            (
                label,
                stub.SubmitReport(bad_notify, metadata=edge.auth()),
                grpc.StatusCode.INVALID_ARGUMENT,
                {"notify.url"},
            )
        )
    # Schedules (issue 17): the same checks on a template, named under schedule.template.
    for label, spec, field in (
        ("malformed cron", pb.Schedule(expression="0 8 * *"), "schedule.expression"),
        ("unknown time zone", pb.Schedule(time_zone="Mars/Base"), "schedule.time_zone"),
        (
            "schedule with an invalid kind",
            pb.Schedule(template=pb.SubmitReportRequest(kind="nope")),
            "schedule.template.kind",
        ),
        (
            "schedule with an http notify URL",
            pb.Schedule(template=synthetic_request(notify=pb.Notify(url="http://x.example/h"))),
            "schedule.template.notify.url",
        ),
        (
            "schedule with a private-address notify URL",
            pb.Schedule(template=synthetic_request(notify=pb.Notify(url="https://10.0.0.1/h"))),
            "schedule.template.notify.url",
        ),
        (
            "schedule with the schedule label",
            pb.Schedule(template=synthetic_request(labels={"reportgrid-schedule": "x"})),
            "schedule.template.labels[reportgrid-schedule]",
        ),
    ):
        if not spec.expression:
            spec.expression = "rate(5 minutes)"
        if not spec.HasField("template"):
            spec.template.CopyFrom(synthetic_request())
        cases.append(
            (
                label,
                stub.CreateSchedule(pb.CreateScheduleRequest(schedule=spec), metadata=edge.auth()),
                grpc.StatusCode.INVALID_ARGUMENT,
                {field},
            )
        )
    passed = 0
    for name, pending, code, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pending
        assert caught.value.code() == code, (name, caught.value)
        got = _violations(caught.value)
        if fields:
            assert got & fields, (name, got)
            assert got <= fields | {"params"}, (name, got)
        passed += 1
    figure("12 invalid fields", cases=len(cases), right_code_and_field=passed)


async def test_bad_and_revoked_keys_are_unauthenticated(
    settings: Settings, aws: RegionResources, figure: Callable[..., None]
) -> None:
    key = put_api_key(aws, TENANT)
    request = pb.ListReportKindsRequest()
    ttl = 0.5
    async with running_edge(settings, key) as edge:
        # A short positive cache so the test need not wait the default 30 s
        edge.server.chain.auth = ApiKeyResolver(
            edge.server.clients.dynamodb, settings.table_name, positive_ttl_seconds=ttl
        )
        refused = 0
        for metadata in (
            (),
            (("authorization", "Basic abc"),),
            (("authorization", "Bearer"),),
            (("authorization", "Bearer not-a-key"),),
            (("authorization", "Bearer " + apikeys.generate_key()),),  # well formed, unknown
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await edge.stub.ListReportKinds(request, metadata=metadata, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            refused += 1
        await edge.stub.ListReportKinds(request, metadata=edge.auth(), timeout=5)  # cached
        apikeys.revoke_key(client("dynamodb", aws.region, aws.endpoint_url), aws.table_name, key)
        revoked_at = time.monotonic()
        while True:
            try:
                await edge.stub.ListReportKinds(request, metadata=edge.auth(), timeout=5)
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # noqa: PT017 -- polled until it fails
                break
            assert time.monotonic() - revoked_at < ttl + 1.0, "revocation never took effect"
            await asyncio.sleep(0.05)
        delay = time.monotonic() - revoked_at
        refused += 1
    figure(
        "14 auth",
        refused_unauthenticated=refused,
        revocation_delay_s=round(delay, 2),
        cache_ttl_s=ttl,
    )


async def test_another_tenants_report_is_not_found_like_a_missing_one(
    edge: Edge, aws: RegionResources, settings: Settings, figure: Callable[..., None]
) -> None:
    other = put_api_key(aws, OTHER_TENANT)
    theirs = await edge.stub.SubmitReport(synthetic_request(), metadata=edge.auth(other))
    forged = ids.IdCodec([b"another-deployment-secret-0123"]).new(TENANT, settings.region).value
    answers = []
    for report_id in (theirs.report_id, forged):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.stub.GetReport(
                pb.GetReportRequest(report_id=report_id), metadata=edge.auth()
            )
        err = caught.value
        answers.append(
            (
                err.code(),
                (err.details() or "").replace(report_id, "<id>"),
                sorted(rpc_details(err)),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.NOT_FOUND
    figure("14 foreign id", foreign_vs_missing="identical", code="NOT_FOUND")
