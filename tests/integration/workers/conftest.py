"""Workers against the real moto server and a real redis-server: clients built with the
region's endpoint and injected, tasks built as the edge builds them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.struct_pb2 import Struct

from functions.notify import Notifier
from functions.runner import Runner, Services
from functions.store import ReportStore
from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord
from reportgrid.settings import Settings
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb

TENANT = "tenant-a"


@dataclass
class Region:
    aws: RegionResources
    settings: Settings
    services: Services
    sqs: Any
    kinesis: Any
    redis_url: str

    def runner(self, **kwargs: Any) -> Runner:
        return Runner(self.services, **kwargs)

    def get(self, report_id: str) -> ReportRecord | None:
        return self.services.store.get(report_id)

    def wait_for(
        self, report_id: str, done: Callable[[ReportRecord], bool], timeout: float = 30
    ) -> ReportRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.get(report_id)
            if record is not None and done(record):
                return record
            time.sleep(0.1)
        raise AssertionError(f"report {report_id} did not get there: {self.get(report_id)}")


@pytest.fixture
def region(aws: RegionResources, settings: Settings, redis_url: str) -> Region:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    services = Services(
        settings=settings,
        store=ReportStore(ddb, settings.table_name),
        s3=client("s3", aws.region, aws.endpoint_url),
        notifier=Notifier(redis_url),
    )
    return Region(
        aws=aws,
        settings=settings,
        services=services,
        sqs=client("sqs", aws.region, aws.endpoint_url),
        kinesis=client("kinesis", aws.region, aws.endpoint_url),
        redis_url=redis_url,
    )


def put_input(region: Region, name: str, body: bytes, *, tenant: str = TENANT) -> str:
    """An object under `tenant`'s prefix of the region's input bucket; its s3:// URI."""
    key = resources.tenant_input_prefix(tenant) + name
    region.services.s3.put_object(Bucket=region.aws.input_bucket, Key=key, Body=body)
    return f"s3://{region.aws.input_bucket}/{key}"


def make_task(
    settings: Settings,
    kind: str,
    params: dict[str, Any],
    *,
    output_format: pb.OutputFormat.ValueType = pb.OUTPUT_FORMAT_CSV,
    inline: bytes | None = None,
    s3_uri: str | None = None,
    data_format: pb.DataFormat.ValueType = pb.DATA_FORMAT_CSV,
    ttl_seconds: int | None = None,
) -> TaskRecord:
    struct = Struct()
    struct.update(params)
    request = pb.SubmitReportRequest(kind=kind, params=struct, output_format=output_format)
    if inline is not None:
        request.input.format = data_format
        request.input.inline_data = inline
    elif s3_uri is not None:
        request.input.format = data_format
        request.input.s3_uri = s3_uri
    if ttl_seconds is not None:
        request.ttl.seconds = ttl_seconds
    report_id = settings.id_codec().new(TENANT, settings.region).value
    task = TaskRecord(
        report_id=report_id, tenant=TENANT, home_region=settings.region, request=request
    )
    task.accept_time.GetCurrentTime()
    return task
