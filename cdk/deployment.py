"""Build the whole deployment: the data stack, one stack per region, one replication stack
per region (multi-region only), the global stack, with the deploy order expressed as stack
dependencies:

  1. data                    (table + replicas, id secret)
  2. every regional stack    (each depends on data only: they deploy in parallel)
  3. every replication stack (each depends on every regional stack: all buckets exist)
     and the global stack    (depends on every regional stack: reads their ALB ARNs)

With `reportgrid:pipeline` the same stacks are built into the stage the pipeline deploys
(cdk/stacks/pipeline.py), so the pipeline deploys exactly what `cdk deploy` would, and
the app holds the pipeline stack instead of the stacks themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import aws_cdk as cdk
from constructs import Construct

from cdk.config import DeployConfig
from cdk.stacks.data import DataStack
from cdk.stacks.global_stack import GlobalStack
from cdk.stacks.regional import RegionalStack
from cdk.stacks.replication import ReplicationStack
from reportgrid.stack_names import (
    DATA_STACK,
    GLOBAL_STACK,
    PIPELINE_STACK,
    regional_stack_name,
    replication_stack_name,
)

if TYPE_CHECKING:
    from cdk.stacks.pipeline import PipelineStack


@dataclass(frozen=True, slots=True)
class Deployment:
    data: DataStack
    regions: dict[str, RegionalStack]
    global_: GlobalStack
    replication: dict[str, ReplicationStack]
    # Only with `reportgrid:pipeline`: then the stacks above are in its stage.
    pipeline: PipelineStack | None = None

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [self.data, *self.regions.values(), *self.replication.values(), self.global_]


def build_deployment(app: cdk.App, config: DeployConfig, project_dir: Path) -> Deployment:
    if config.pipeline is not None:
        from cdk.stacks.pipeline import PipelineStack  # noqa: PLC0415 -- only when opted in

        pipeline = PipelineStack(
            app,
            PIPELINE_STACK,
            config=config,
            pipeline=config.pipeline,
            project_dir=project_dir,
            build=build_stacks,
            env=cdk.Environment(account=config.account, region=config.primary_region),
            description="Reportgrid pipeline: main deploys itself, region by region",
        )
        cdk.Tags.of(app).add("project", "reportgrid")
        return replace(pipeline.deployment, pipeline=pipeline)
    return build_stacks(app, config, project_dir)


def build_stacks(scope: Construct, config: DeployConfig, project_dir: Path) -> Deployment:
    """The stacks, in `scope`: the app, or the pipeline's stage. Their CloudFormation names
    are the same in both, so the pipeline takes over stacks deployed by hand."""

    def env(region: str) -> cdk.Environment:
        # Explicit account and region: everything resolves offline, no lookups.
        return cdk.Environment(account=config.account, region=region)

    data = DataStack(
        scope,
        DATA_STACK,
        stack_name=DATA_STACK,
        config=config,
        env=env(config.primary_region),
        description="Reportgrid data: DynamoDB global table and id secrets",
    )
    regions: dict[str, RegionalStack] = {}
    for region in config.regions:
        name = regional_stack_name(region)
        stack = RegionalStack(
            scope,
            name,
            stack_name=name,
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
        scope,
        GLOBAL_STACK,
        stack_name=GLOBAL_STACK,
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
        name = replication_stack_name(region)
        replication[region] = after = ReplicationStack(
            scope,
            name,
            stack_name=name,
            bucket_name=results.bucket.bucket_name,
            role_arn=results.replication_role.role_arn,
            rules=results.replication_rules,
            env=env(region),
            description=f"Reportgrid results replication from {region}, once every bucket exists",
        )
        for other in regions.values():
            after.add_stack_dependency(other, "every results bucket exists before any rule")
    for tag, value in (("project", "reportgrid"),):
        cdk.Tags.of(scope).add(tag, value)
    return Deployment(data=data, regions=regions, global_=global_, replication=replication)
