"""One region: the network, then its components (cdk/stacks/region/): storage and ingest,
the edge, the workers and, with a peer region, the multi-region half; each grants what its
own code uses and feeds the region's monitoring its alarms and dashboard rows. With the
pipeline (config.guarded_rollouts) also the synthetic canary, and the rollout wiring that
makes a deploy roll itself back on the region's alarms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk.artifacts import ARTIFACTS
from cdk.config import DeployConfig
from cdk.constructs.events import CompletionEvents
from cdk.constructs.monitoring import RegionMonitoring
from cdk.constructs.network import Network
from cdk.constructs.python_function import bundled_code
from cdk.constructs.results_bucket import ResultsBucket
from cdk.constructs.scheduler import Scheduler
from cdk.constructs.service_cluster import ServiceCluster
from cdk.constructs.task_mirror import TaskMirror
from cdk.constructs.webhooks import Webhooks
from cdk.stacks.region.canary import SyntheticCanary
from cdk.stacks.region.edge import Edge
from cdk.stacks.region.multi_region import LeaseArbitration, MultiRegion, Peer
from cdk.stacks.region.rollout import Rollout
from cdk.stacks.region.storage import RegionalStorage
from cdk.stacks.region.workers import Workers


class RegionalStack(Stack):
    """Exposes the components (`storage`, `edge` — its ALB is Global Accelerator's endpoint —,
    `workers`, `events`, `scheduler`, `multi_region`, and with the pipeline `canary` and
    `rollout`), `network` and `monitoring`."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DeployConfig,
        region: str,
        project_dir: Path,
        **kwargs: Any,
    ) -> None:
        self._zones = list(config.availability_zones(region))
        super().__init__(scope, id_, **kwargs)
        self.network = Network(
            self,
            "Network",
            availability_zones=config.availability_zones(region),
            nat_gateways=config.capacity.nat_gateways,
        )
        self.storage = storage = RegionalStorage(
            self, config=config, region=region, network=self.network
        )
        peer = Peer.of(self, config=config, region=region)
        # Shared by the components: one cluster for the Fargate services, one code asset
        # (bundled once) for every Lambda.
        cluster = ServiceCluster(self, "Cluster", vpc=self.network.vpc).cluster
        code = bundled_code(project_dir)
        self.edge = Edge(
            self,
            config=config,
            region=region,
            storage=storage,
            peer=peer,
            cluster=cluster,
            project_dir=project_dir,
        )
        self.workers = Workers(
            self,
            config=config,
            storage=storage,
            cluster=cluster,
            vpc=self.network.vpc,
            code=code,
            project_dir=project_dir,
        )
        if config.lease_arbiter is not None:
            LeaseArbitration(self, workers=self.workers)
        # One event per terminal state written here, from the table's stream (docs/EVENTS.md).
        self.events = CompletionEvents(
            self, "CompletionEvents", code=code, environment=storage.lambda_environment
        )
        storage.id_secret.grant_read(self.events.function)  # settings at cold start
        # Fed by the completion-event bus: a rule on it to the webhook queue.
        self.webhooks = Webhooks(
            self,
            "Webhooks",
            code=code,
            environment=storage.lambda_environment,
            table=storage.table,
            id_secret=storage.id_secret,
            bus=self.events.bus,
        )
        # One rate(1 minute) schedule firing the due Reportgrid schedules (docs/SCHEDULES.md).
        self.scheduler = Scheduler(
            self,
            "Scheduler",
            code=code,
            environment=storage.lambda_environment,
            table=storage.table,
            stream=storage.ingest.stream,
            id_secret=storage.id_secret,
            input_buckets=config.input_buckets,
            peer_region=peer.region if peer is not None else None,
        )
        self.multi_region = (
            MultiRegion(self, config=config, peer=peer, storage=storage, code=code)
            if peer is not None
            else None
        )
        self.canary = (
            SyntheticCanary(
                self,
                edge=self.edge,
                storage=storage,
                vpc=self.network.vpc,
                code=bundled_code(project_dir, ARTIFACTS["canary"]),
                domain_name=config.domain_name or "",
            )
            if config.guarded_rollouts
            else None
        )
        self.monitoring = RegionMonitoring(
            self,
            "Monitoring",
            region=region,
            alarm_email=config.alarm_email,
            named_alarms=config.guarded_rollouts,
            signals=[
                self.edge.signals,
                self.workers.signals,
                storage.signals,
                self.webhooks.signals,
                self.events.signals,
                self.scheduler.signals,
                *([self.multi_region.signals] if self.multi_region else []),
                *([self.canary.signals] if self.canary else []),
            ],
        )
        self.rollout = (
            Rollout(self, edge=self.edge, workers=self.workers, alarms=self.monitoring.alarms)
            if config.guarded_rollouts
            else None
        )

    @property
    def results(self) -> ResultsBucket:
        return self.storage.results

    @property
    def mirror(self) -> TaskMirror | None:
        return self.multi_region.mirror if self.multi_region else None

    @property
    def availability_zones(self) -> list[str]:
        # The configured zones, instead of the CDK's context lookup (which needs credentials).
        return self._zones
