"""The multi-region half (a peer region only): what this region knows of its peer, and the
task mirror that copies every task to the peer's standby queue. The standby worker, which
runs the peer's mirrored tasks here and writes this region's heartbeat, runs in every
deployment and is one of the workers (cdk/stacks/region/workers.py)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.config import DeployConfig
from cdk.constructs.monitoring import FIVE_MINUTES, ONE_MINUTE, AlarmSpec, Signals
from cdk.constructs.task_mirror import TaskMirror
from cdk.stacks.region.storage import RegionalStorage
from cdk.stacks.region.workers import Workers
from reportgrid import resources as r

E = r.ENV
# What functions/arbiter.py calls: conditional puts and updates, strongly consistent gets.
LEASE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")


@dataclass(frozen=True, slots=True)
class Peer:
    """The peer region (the next in the ring) by deterministic names: no cross-region
    reference. The replica bucket is the peer's results bucket, which receives this region's
    results (ResultsBucket replicates both ways).

    The peer's regional stack creates both, and it deploys independently of this one, so
    nothing here may need them to exist at deploy time: they are used only in IAM statements
    (IAM does not check that a resource exists) and in environment values read at run time.
    No event source, subscription or policy attachment targets them (the peer's standby
    worker consumes its own queue); the replication rules that do need the peer's bucket are
    put by cdk/stacks/replication.py. tests/infra/test_deploy_order.py checks this."""

    region: str
    standby_queue: sqs.IQueue
    replica_bucket: s3.IBucket

    @classmethod
    def of(cls, scope: Construct, *, config: DeployConfig, region: str) -> Peer | None:
        peer = config.peer_region(region)
        if peer is None:
            return None
        return cls(
            region=peer,
            standby_queue=sqs.Queue.from_queue_arn(
                scope,
                "PeerStandbyQueue",
                f"arn:{Aws.PARTITION}:sqs:{peer}:{config.account}:{r.STANDBY_QUEUE_NAME}",
            ),
            replica_bucket=s3.Bucket.from_bucket_attributes(
                scope,
                "ReplicaResults",
                bucket_name=r.results_bucket_name(config.account, peer),
                region=peer,
                account=config.account,
            ),
        )


class MultiRegion:
    """Exposes `mirror` and its `signals`."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeployConfig,
        peer: Peer,
        storage: RegionalStorage,
        code: lambda_.Code,
    ) -> None:
        ingest = storage.ingest
        self.mirror = TaskMirror(
            scope,
            "TaskMirror",
            code=code,
            stream=ingest.stream,
            failure_queue=ingest.failure_queue,
            environment={
                **storage.lambda_environment,
                E.PEER_REGION: peer.region,
                E.PEER_STANDBY_QUEUE_URL: peer.standby_queue.queue_url,
                E.MIRROR_GRACE_SECONDS: str(config.mirror_grace_seconds),
            },
            parallelization_factor=config.capacity.lambda_parallelization_factor,
        )
        # functions/mirror: SendMessageBatch to the peer's standby queue (the event source
        # grants the stream reads and the sends of given-up batches to the failure queue).
        peer.standby_queue.grant_send_messages(self.mirror.function)
        storage.id_secret.grant_read(self.mirror.function)
        self.signals = self._signals()

    def _signals(self) -> Signals:
        function = self.mirror.function
        iterator_age = function.metric("IteratorAge", statistic="Maximum", period=ONE_MINUTE)
        return Signals(
            alarms=[
                AlarmSpec(
                    "MirrorErrors",
                    function.metric_errors(period=FIVE_MINUTES),
                    10,
                    1,
                    "task mirror to the peer region failing",
                ),
                # Mirror lag adds to the recovery point of a region loss (tasks not yet
                # copied).
                AlarmSpec(
                    "MirrorIteratorAge",
                    iterator_age,
                    60_000,
                    5,
                    "task mirror falls behind (>60 s): tasks not yet safe in the peer region",
                ),
            ],
            rows=[
                [
                    cw.GraphWidget(
                        title="Task mirror (errors; iterator age ms)",
                        left=[function.metric_errors(period=ONE_MINUTE)],
                        right=[iterator_age],
                        width=12,
                    )
                ]
            ],
        )


class LeaseArbitration:
    """Every process that claims or ends reports (stream worker, stream-failure drain, queue
    worker, standby worker) claims through the lease arbiter's MRSC table: its name in the
    environment (functions.store.store_for) and the three calls on it. The data stack
    declares the table (cdk/constructs/report_table.py LeaseTable) when
    `config.lease_arbiter` is set; this region's replica has the same name."""

    def __init__(self, scope: Construct, *, workers: Workers) -> None:
        table = dynamodb.TableV2.from_table_name(scope, "LeaseTable", r.ARBITER_TABLE_NAME)
        functions = (workers.stream_worker.function, workers.failure_drain.function)
        for function in functions:
            function.add_environment(E.ARBITER_TABLE_NAME, r.ARBITER_TABLE_NAME)
            table.grant(function, *LEASE_ACTIONS)
        for service in (workers.queue_worker, workers.standby_worker):
            service.container.add_environment(E.ARBITER_TABLE_NAME, r.ARBITER_TABLE_NAME)
            table.grant(service.task_role, *LEASE_ACTIONS)
