"""Fixtures for the edge: the server built in-process on 127.0.0.1:0 against the moto server
and a real redis-server, API keys in the table, and helpers to read the task stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from grpc_edge.clients import Clients
from grpc_edge.server import EdgeServer, build_server
from reportgrid import apikeys, records, tasks
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc

TENANT = "acme"
OTHER_TENANT = "globex"


@dataclass
class Edge:
    server: EdgeServer
    port: int
    channel: grpc.aio.Channel
    stub: reports_pb2_grpc.ReportServiceStub
    key: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def auth(self, key: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key or self.key}"),)


@contextlib.asynccontextmanager
async def running_edge(
    settings: Settings, key: str, *, clients: Clients | None = None, **kwargs: Any
) -> AsyncIterator[Edge]:
    server, port = await build_server(settings, clients=clients, host="127.0.0.1", port=0, **kwargs)
    await server.start()
    await server.serving.wait()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Edge(server, port, channel, reports_pb2_grpc.ReportServiceStub(channel), key)
    finally:
        await channel.close()
        await server.stop_now()


def put_api_key(aws: RegionResources, tenant: str) -> str:
    key = apikeys.generate_key()
    apikeys.put_key(client("dynamodb", aws.region, aws.endpoint_url), aws.table_name, key, tenant)
    return key


@pytest.fixture
def api_key(aws: RegionResources) -> str:
    return put_api_key(aws, TENANT)


@pytest.fixture
def other_key(aws: RegionResources) -> str:
    return put_api_key(aws, OTHER_TENANT)


@pytest.fixture
async def edge(settings: Settings, api_key: str) -> AsyncIterator[Edge]:
    async with running_edge(settings, api_key) as running:
        yield running


def put_record(aws: RegionResources, record: ReportRecord) -> None:
    """Test setup: a report item as the workers would write it."""
    client("dynamodb", aws.region, aws.endpoint_url).put_item(
        TableName=aws.table_name, Item=records.to_item(record)
    )


def stream_tasks(aws: RegionResources) -> list[TaskRecord]:
    """Every task record in the region's stream, read back shard by shard."""
    kinesis = client("kinesis", aws.region, aws.endpoint_url)
    found: list[TaskRecord] = []
    for shard in kinesis.list_shards(StreamName=aws.stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=aws.stream_name,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            found += [tasks.decode(r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return found


def synthetic_request(**kwargs: Any) -> pb.SubmitReportRequest:
    request = pb.SubmitReportRequest(kind="synthetic", **kwargs)
    request.params.update({"output_rows": 10})
    return request
