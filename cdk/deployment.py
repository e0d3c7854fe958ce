"""Build the whole deployment into an App: the data stack, one stack per region, one
replication stack per region (multi-region only), the global stack, with the deploy order
expressed as stack dependencies:

  1. data                    (table + replicas, id secret)
  2. every regional stack    (each depends on data only: they deploy in parallel)
  3. every replication stack (each depends on every regional stack: all buckets exist)
     and the global stack    (depends on every regional stack: reads their ALB ARNs)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk

from cdk.config import DeployConfig
from cdk.stacks.data import DataStack
from cdk.stacks.global_stack import GlobalStack
from cdk.stacks.regional import RegionalStack
from cdk.stacks.replication import ReplicationStack

DATA_STACK = "Reportgrid-Data"
GLOBAL_STACK = "Reportgrid-Global"


def regional_stack_name(region: str) -> str:
    return f"Reportgrid-{region}"


def replication_stack_name(region: str) -> str:
    return f"Reportgrid-{region}-Replication"


@dataclass(frozen=True, slots=True)
class Deployment:
    data: DataStack
    regions: dict[str, RegionalStack]
    global_: GlobalStack
    replication: dict[str, ReplicationStack]

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [self.data, *self.regions.values(), *self.replication.values(), self.global_]


def build_deployment(app: cdk.App, config: DeployConfig, project_dir: Path) -> Deployment:
    def env(region: str) -> cdk.Environment:
        # Explicit account and region: everything resolves offline, no lookups.
        return cdk.Environment(account=config.account, region=region)

    data = DataStack(
        app,
        DATA_STACK,
        config=config,
        env=env(config.primary_region),
        description="Reportgrid data: DynamoDB global table and id secrets",
    )
    regions: dict[str, RegionalStack] = {}
    for region in config.regions:
        stack = RegionalStack(
            app,
            regional_stack_name(region),
            config=config,
            region=region,
            project_dir=project_dir,
            env=env(region),
            # Lets the global stack read this region's ALB ARN (SSM-backed, managed by CDK).
            cross_region_references=True,
            description=f"Reportgrid region {region}: edge, workers, ingest, cache, storage",
        )
        stack.add_stack_dependency(data, "the table replica and the id secret replica come first")
        regions[region] = stack
    global_ = GlobalStack(
        app,
        GLOBAL_STACK,
        config=config,
        load_balancers={region: stack.edge.load_balancer for region, stack in regions.items()},
        env=env(config.global_region),
        cross_region_references=True,
        description="Reportgrid global: Global Accelerator and the global dashboard",
    )
    replication: dict[str, ReplicationStack] = {}
    for region, stack in regions.items():
        results = stack.results
        if results.replication_role is None:
            continue  # one region: nothing to replicate
        replication[region] = after = ReplicationStack(
            app,
            replication_stack_name(region),
            bucket_name=results.bucket.bucket_name,
            role_arn=results.replication_role.role_arn,
            rules=results.replication_rules,
            env=env(region),
            description=f"Reportgrid results replication from {region}, once every bucket exists",
        )
        for other in regions.values():
            after.add_stack_dependency(other, "every results bucket exists before any rule")
    for tag, value in (("project", "reportgrid"),):
        cdk.Tags.of(app).add(tag, value)
    return Deployment(data=data, regions=regions, global_=global_, replication=replication)
