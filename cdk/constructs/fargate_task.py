"""The Fargate task definition and log group every Reportgrid service uses (x86_64 Linux,
logs kept a month), so the edge and the workers cannot drift apart in how they run."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.constructs.nag import suppress


def fargate_task(
    scope: Construct, *, cpu: int, memory_mib: int
) -> tuple[ecs.FargateTaskDefinition, logs.LogGroup]:
    """A task definition ("Task") and its log group ("Logs") under `scope`."""
    task = ecs.FargateTaskDefinition(
        scope,
        "Task",
        cpu=cpu,
        memory_limit_mib=memory_mib,
        # x86_64: the image's wheels (duckdb among them) are built for it.
        runtime_platform=ecs.RuntimePlatform(
            cpu_architecture=ecs.CpuArchitecture.X86_64,
            operating_system_family=ecs.OperatingSystemFamily.LINUX,
        ),
    )
    suppress(
        task.obtain_execution_role(),
        "AwsSolutions-IAM5",
        "ecr:GetAuthorizationToken accepts no resource but *; the image pull itself is scoped "
        "to the asset repository.",
        findings=["Resource::*"],
    )
    log_group = logs.LogGroup(
        scope, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
    )
    return task, log_group
