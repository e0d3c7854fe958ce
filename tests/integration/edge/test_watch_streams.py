"""WatchReport as a long-lived stream (issues 12.7 and 19.9): heartbeats while the report
is quiet, a budget of its own (not the unary call budget), a clear end the SDK resumes
from, and SDK keepalive pings the edge accepts. Real edge on loopback, moto server and
redis-server; the intervals are shortened through settings."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from reportgrid import resources
from reportgrid.client import KEEPALIVE_OPTIONS, AsyncReportClient
from reportgrid.local.bootstrap import RegionResources
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings, load_settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc
from tests.integration.edge.conftest import TENANT, Edge, put_record, running_edge

E = resources.ENV


def running_report(aws: RegionResources, settings: Settings) -> ReportRecord:
    report_id = settings.id_codec().new(TENANT, settings.region).value
    now = time.time_ns() // 1_000_000
    record = ReportRecord(report_id, TENANT, "synthetic", State.RUNNING, now, revision=1)
    put_record(aws, record.with_(started_ms=now))
    return record


async def test_a_quiet_watch_gets_heartbeats_and_no_repeated_report(
    region_env: dict[str, str], api_key: str, aws: RegionResources
) -> None:
    settings = load_settings({**region_env, E.WATCH_HEARTBEAT_SECONDS: "0.3"})
    record = running_report(aws, settings)
    async with running_edge(settings, api_key) as edge:
        # Given a watch of a RUNNING report that does not change
        watch = edge.stub.WatchReport(
            pb.WatchReportRequest(report_id=record.report_id), metadata=edge.auth(), timeout=10
        )
        first = await watch.read()
        # When the stream has been quiet for a while
        started = time.monotonic()
        events = [await watch.read() for _ in range(4)]
        elapsed = time.monotonic() - started
        watch.cancel()
    # Then the report came once, then only heartbeats, about one per interval
    assert first.WhichOneof("event") == "report"
    assert first.report.state == pb.REPORT_STATE_RUNNING
    assert [e.WhichOneof("event") for e in events] == ["heartbeat"] * 4
    assert all(e.heartbeat.next_within.ToMilliseconds() == 300 for e in events)
    assert all(e.heartbeat.sent_at.ToMilliseconds() > 0 for e in events)
    assert 0.9 <= elapsed < 3.0


def test_the_default_heartbeat_beats_every_idle_timeout_on_the_way() -> None:
    # Global Accelerator's 340 s (fixed) and the ALB's 60 s default idle timeouts: the
    # heartbeat comes well within both, as a setting can never move it above GA's.
    assert resources.EDGE_WATCH_HEARTBEAT_SECONDS * 2 <= 60
    assert resources.EDGE_WATCH_HEARTBEAT_SECONDS < resources.GA_TCP_IDLE_TIMEOUT_SECONDS
    with pytest.raises(ValueError, match="less than 340"):
        Settings.model_validate(
            {
                E.REGION: "eu-west-1",
                E.ID_SECRETS: "x" * 16,
                E.WATCH_HEARTBEAT_SECONDS: "400",
            }
        )


async def test_a_watch_without_deadline_outlives_the_call_budget_then_ends_unavailable(
    region_env: dict[str, str], api_key: str, aws: RegionResources
) -> None:
    settings = load_settings(
        {
            **region_env,
            E.CALL_BUDGET_SECONDS: "0.5",
            E.MAX_WATCH_SECONDS: "2.5",
            E.WATCH_HEARTBEAT_SECONDS: "0.3",
        }
    )
    record = running_report(aws, settings)
    async with running_edge(settings, api_key) as edge:
        # Given a watch with no client deadline
        watch = edge.stub.WatchReport(
            pb.WatchReportRequest(report_id=record.report_id), metadata=edge.auth()
        )
        started = time.monotonic()
        kinds = []
        caught: grpc.aio.AioRpcError | None = None
        while caught is None:
            try:
                message = await watch.read()
            except grpc.aio.AioRpcError as err:
                caught = err
                break
            assert message is not grpc.aio.EOF  # only a terminal report ends it OK
            kinds.append((round(time.monotonic() - started, 1), message.WhichOneof("event")))
        ended = time.monotonic() - started
    # Then it lived past the unary budget (0.5 s), heartbeating, until its own (2.5 s)
    assert kinds[0][1] == "report"
    assert [k for t, k in kinds if t > 1.0]
    assert all(k == "heartbeat" for _, k in kinds[1:])
    assert 2.3 <= ended < 4.0
    # And it ended with a status that says "watch again", with a retry delay
    err = caught
    assert err is not None
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "watch again" in (err.details() or "")
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)


async def test_the_sdk_skips_heartbeats_and_resumes_after_the_stream_ends(
    region_env: dict[str, str], api_key: str, aws: RegionResources
) -> None:
    settings = load_settings(
        {**region_env, E.MAX_WATCH_SECONDS: "1.0", E.WATCH_HEARTBEAT_SECONDS: "0.2"}
    )
    record = running_report(aws, settings)
    async with running_edge(settings, api_key) as edge:
        seen: list[pb.Report] = []
        async with AsyncReportClient(edge.target, api_key=api_key) as client:
            # Given the SDK waiting on a RUNNING report whose streams end every second
            waiting = asyncio.ensure_future(
                client.wait(record.report_id, timeout=15, poll_interval=0.1, on_update=seen.append)
            )
            await asyncio.sleep(2.5)
            assert not waiting.done()
            # When the report ends after a few streams have ended
            now = time.time_ns() // 1_000_000
            put_record(aws, record.with_(state=State.SUCCEEDED, ended_ms=now, revision=2))
            final = await asyncio.wait_for(waiting, 10)
        ended_unavailable = edge.server.metrics.method("WatchReport").codes.get("UNAVAILABLE", 0)
    # Then it returned the terminal report, and every update was a report, never a heartbeat
    assert final.state == pb.REPORT_STATE_SUCCEEDED
    assert all(isinstance(r, pb.Report) and r.report_id == record.report_id for r in seen)
    assert {r.state for r in seen} == {pb.REPORT_STATE_RUNNING, pb.REPORT_STATE_SUCCEEDED}
    # And it watched again after each stream ended (not one poll after another)
    assert ended_unavailable >= 2


async def _quiet_watch_survives(
    edge: Edge, api_key: str, keepalive_ms: int, seconds: float
) -> bool:
    """An SDK channel (its own options, keepalive time replaced) with a quiet watch open for
    `seconds`: True if the watch and the connection are still alive after it."""
    options = [("grpc.keepalive_time_ms", keepalive_ms)]
    settings = edge.server.settings
    report_id = settings.id_codec().new(TENANT, settings.region).value  # fresh: PENDING
    async with AsyncReportClient(edge.target, api_key=api_key, options=options) as client:
        channel = client._channel(edge.target)
        watch = reports_pb2_grpc.ReportServiceStub(channel).WatchReport(
            pb.WatchReportRequest(report_id=report_id), metadata=edge.auth(api_key), timeout=30
        )
        await watch.read()
        # A heartbeat is 30 s away: a read still pending then is a quiet, live watch.
        pending = asyncio.ensure_future(watch.read())
        await asyncio.wait({pending}, timeout=seconds)
        alive = not pending.done()
        watch.cancel()
        if not alive:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await pending
        return alive


async def test_sdk_keepalive_pings_are_accepted_and_faster_ones_get_goaway(
    region_env: dict[str, str], api_key: str
) -> None:
    # The SDK pings every CLIENT_KEEPALIVE_SECONDS against the edge's minimum of
    # EDGE_MIN_CLIENT_PING_INTERVAL_MS: the same ratio, scaled down to fit a test.
    sdk_ms = dict(KEEPALIVE_OPTIONS)["grpc.keepalive_time_ms"]
    ratio = sdk_ms / resources.EDGE_MIN_CLIENT_PING_INTERVAL_MS
    assert ratio >= 2
    # grpc core's client sends at most about one ping a second whatever its keepalive time,
    # so the scaled minimum stays above that for the fast pings below to be strikes.
    minimum_ms = 1500
    settings = load_settings({**region_env, E.MIN_CLIENT_PING_INTERVAL_MS: str(minimum_ms)})
    async with running_edge(settings, api_key) as edge:
        # Given an SDK channel with a quiet watch and pings at the SDK's ratio (two pings
        # and more in the window)
        sdk_like_ms = round(minimum_ms * ratio)
        accepted = await _quiet_watch_survives(edge, api_key, sdk_like_ms, 2.3 * sdk_like_ms / 1000)
        # And, to show the edge does enforce its minimum, pings as fast as the client goes
        refused = not await _quiet_watch_survives(edge, api_key, 100, 8.0)
    # Then the SDK's pings never cost the watch its connection; the fast ones do
    assert accepted, (
        f"a quiet watch pinging every {sdk_like_ms} ms (the SDK's ratio to the edge's minimum "
        f"of {minimum_ms} ms) lost its connection: the edge refuses the SDK's keepalive pings"
    )
    assert refused, (
        f"a quiet watch pinging every 100 ms survived 8 s: the edge does not enforce its "
        f"minimum ping interval ({minimum_ms} ms, grpc.http2.min_ping_interval_without_data_ms"
        ", GOAWAY too_many_pings after the strikes)"
    )
