"""The Submit path's own dependencies, real: the lean PutRecords writer against the moto
server (which closes every connection) and against a kept-alive endpoint, and a keyed
Submit's Redis round trips (none: its claim is a DynamoDB item), counted by redis-server
itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiobotocore.session
import pytest
import redis

from bench.fake_kinesis import FakeKinesisProcess
from grpc_edge.kinesis_writer import KinesisCallError, KinesisWriter
from reportgrid import tasks, tracing
from reportgrid.local.bootstrap import RegionResources
from reportgrid.local.servers import free_port
from reportgrid.settings import Settings
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import Edge, stream_tasks, synthetic_request


async def _writer(endpoint_url: str, region: str) -> KinesisWriter:
    credentials = await aiobotocore.session.get_session().get_credentials()
    assert credentials is not None
    return KinesisWriter(endpoint_url, region, credentials)


async def test_writer_puts_records_kinesis_stores(aws: RegionResources) -> None:
    writer = await _writer(aws.endpoint_url, aws.region)
    datas = [tasks.MAGIC + bytes([1]) + bytes([n]) * 300 for n in range(5)]
    for _ in range(3):
        answer = await writer.put_records(
            StreamName=aws.stream_name,
            Records=[{"Data": d, "PartitionKey": f"rpt_{n}"} for n, d in enumerate(datas)],
        )
        assert answer["FailedRecordCount"] == 0
        assert [bool(r.get("SequenceNumber")) for r in answer["Records"]] == [True] * 5
    # moto answers `Connection: close`: the writer reconnects for every call.
    assert writer.connections_opened == 3
    await writer.close()


async def test_writer_raises_on_a_failed_call(aws: RegionResources) -> None:
    writer = await _writer(aws.endpoint_url, aws.region)
    with pytest.raises(KinesisCallError) as caught:
        await writer.put_records(
            StreamName="no-such-stream", Records=[{"Data": b"x", "PartitionKey": "k"}]
        )
    assert caught.value.error_type == "ResourceNotFoundException"
    await writer.close()


@pytest.fixture
def keep_alive_kinesis(tmp_path: Path, aws: RegionResources) -> Iterator[FakeKinesisProcess]:
    fake = FakeKinesisProcess(
        aws.endpoint_url, tmp_path / "fake-kinesis.log", close=False, port=free_port()
    )
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


async def test_writer_keeps_one_connection_alive(
    aws: RegionResources, keep_alive_kinesis: FakeKinesisProcess
) -> None:
    writer = await _writer(keep_alive_kinesis.endpoint_url, aws.region)
    for n in range(20):
        answer = await writer.put_records(
            StreamName=aws.stream_name, Records=[{"Data": bytes([n]), "PartitionKey": "k"}]
        )
        assert answer["Records"][0]["ShardId"]
    assert writer.connections_opened == 1
    assert keep_alive_kinesis.take_records() == [bytes([n]) for n in range(20)]
    await writer.close()


def _commands(url: str) -> dict[str, int]:
    stats = redis.Redis.from_url(url).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_a_keyed_submit_costs_no_redis_command(
    edge: Edge, settings: Settings, aws: RegionResources
) -> None:
    # The key's claim is a DynamoDB item (grpc_edge/idempotency.py); Redis is not on a
    # keyed Submit's path at all.
    assert settings.redis_url
    before = _commands(settings.redis_url)
    first = await edge.stub.SubmitReport(
        synthetic_request(idempotency_key="one-trip"), metadata=edge.auth(), timeout=5
    )
    again = await edge.stub.SubmitReport(
        synthetic_request(idempotency_key="one-trip"), metadata=edge.auth(), timeout=5
    )
    assert (first.deduplicated, again.deduplicated) == (False, True)
    assert again.report_id == first.report_id
    # (Connection housekeeping aside: the test's own INFO calls, new connections' HELLO.)
    housekeeping = ("info", "client", "hello", "ping", "select")
    assert {
        name: calls
        for name, calls in _commands(settings.redis_url).items()
        if not name.startswith(housekeeping)
    } == {name: calls for name, calls in before.items() if not name.startswith(housekeeping)}
    # Both tasks are in the log (the retry is harmless: one id, one report).
    assert [t.report_id for t in stream_tasks(aws)].count(first.report_id) == 2

    replies = await asyncio.gather(
        *(
            edge.stub.SubmitReport(
                synthetic_request(idempotency_key=f"burst-{n}"), metadata=edge.auth(), timeout=5
            )
            for n in range(40)
        )
    )
    assert not any(r.deduplicated for r in replies)
    assert all(r.state == pb.REPORT_STATE_PENDING for r in replies)
    assert len({r.report_id for r in replies}) == 40


class _Botocore:
    """Stands for the aiobotocore client, which the local region's IAM hook judges."""

    def __init__(self, *, denied: bool) -> None:
        self.denied = denied
        self.calls = 0

    async def put_records(self, *, StreamName: str, Records: Any) -> Any:
        self.calls += 1
        if self.denied:
            raise PermissionError("AccessDenied: kinesis:PutRecords")
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"}]}


@pytest.mark.parametrize("denied", [False, True])
async def test_first_call_goes_through_botocore_and_a_denial_keeps_it_there(
    denied: bool, aws: RegionResources, keep_alive_kinesis: FakeKinesisProcess
) -> None:
    credentials = await aiobotocore.session.get_session().get_credentials()
    assert credentials is not None
    judged = _Botocore(denied=denied)
    writer = KinesisWriter(
        keep_alive_kinesis.endpoint_url, aws.region, credentials, first_via=judged
    )
    outcomes = []
    for n in range(3):
        try:
            await writer.put_records(
                StreamName=aws.stream_name, Records=[{"Data": bytes([n]), "PartitionKey": "k"}]
            )
            outcomes.append("ok")
        except PermissionError:
            outcomes.append("denied")
    if denied:
        assert (outcomes, judged.calls, keep_alive_kinesis.take_records()) == (
            ["denied"] * 3,
            3,
            [],
        )
    else:
        assert (outcomes, judged.calls) == (["ok"] * 3, 1)
        assert keep_alive_kinesis.take_records() == [bytes([1]), bytes([2])]
    await writer.close()


async def test_submit_writes_the_callers_trace_context_into_the_task(
    edge: Edge, aws: RegionResources
) -> None:
    # Given a caller that sends an X-Ray header, and one that sends nothing
    stub: Any = edge.stub  # the generated stub's types are the sync ones
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    traced = await stub.SubmitReport(
        synthetic_request(), metadata=(*edge.auth(), ("x-amzn-trace-id", header)), timeout=5
    )
    plain = await stub.SubmitReport(synthetic_request(), metadata=edge.auth(), timeout=5)
    # Then the task carries the caller's context, or one minted by the edge
    written = {t.report_id: t.trace_header for t in stream_tasks(aws)}
    assert written[traced.report_id] == header
    assert tracing.parse_header(written[plain.report_id]) is not None
