"""Two regions on the one moto server, each with its own settings, store and queues, and
the global-table replicator between them, stepped by the test (no background thread) so
that interleavings are exact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.struct_pb2 import Struct

from functions.notify import Notifier
from functions.runner import Runner, Services
from functions.store import ReportStore
from reportgrid import resources
from reportgrid.local.bootstrap import RegionResources, client, create_region
from reportgrid.local.replicator import GlobalTableReplicator
from reportgrid.local.servers import MotoServer
from reportgrid.settings import Settings, load_settings
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb
from tests.conftest import TEST_ID_SECRET

HOME, PEER = "us-east-1", "eu-west-1"
TENANT = "tenant-a"
LEASE_SECONDS = 2


@dataclass
class Region:
    aws: RegionResources
    settings: Settings
    services: Services
    ddb: Any
    sqs: Any

    def runner(self, prefix: str) -> Runner:
        return Runner(self.services, owner_prefix=f"{prefix}:{self.aws.region}")


@dataclass
class Pair:
    home: Region
    peer: Region
    replicator: GlobalTableReplicator


def _region(aws: RegionResources, peer: RegionResources) -> Region:
    env = resources.ENV
    settings = load_settings(
        {
            **aws.environ(),
            env.ID_SECRETS: TEST_ID_SECRET,
            env.PEER_REGION: peer.region,
            env.PEER_STANDBY_QUEUE_URL: peer.standby_queue_url,
            env.REPLICA_RESULTS_BUCKET: peer.results_bucket,
            env.WORKER_LEASE_SECONDS: str(LEASE_SECONDS),
            env.MIRROR_GRACE_SECONDS: "1",
            env.STANDBY_MARGIN_SECONDS: "0.5",
        }
    )
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    services = Services(
        settings=settings,
        store=ReportStore(ddb, settings.table_name),
        s3=client("s3", aws.region, aws.endpoint_url),
        notifier=Notifier(None),
    )
    return Region(aws, settings, services, ddb, client("sqs", aws.region, aws.endpoint_url))


@pytest.fixture
def pair(moto_server: MotoServer) -> Pair:
    moto_server.reset()
    home = create_region(HOME, moto_server.endpoint_url, shards=1)
    peer = create_region(PEER, moto_server.endpoint_url, shards=1)
    replicator = GlobalTableReplicator(moto_server.endpoint_url, [HOME, PEER])
    return Pair(_region(home, peer), _region(peer, home), replicator)


def make_task(settings: Settings, *, seed: int = 1, age_seconds: float = 0) -> TaskRecord:
    params = Struct()
    params.update({"output_rows": 50, "seed": seed})
    request = pb.SubmitReportRequest(kind="synthetic", params=params)
    task = TaskRecord(
        report_id=settings.id_codec().new(TENANT, settings.region).value,
        tenant=TENANT,
        home_region=settings.region,
        request=request,
    )
    task.accept_time.GetCurrentTime()
    task.accept_time.FromMilliseconds(task.accept_time.ToMilliseconds() - int(age_seconds * 1000))
    return task
