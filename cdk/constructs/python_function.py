"""The region's Python Lambdas (stream worker, task mirror, stream-failure drain, and with
the pipeline the synthetic canary): code assets bundled locally without Docker, one way to
build a function from them.

`bundled_code` is built once per stack and artifact and shared, so an asset is bundled (and
uploaded) once however many functions run from it; `python_function` creates the function
and its log group in the caller's scope (the caller's construct ids stay the logical-id
prefix).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import BundlingOptions, Duration, IgnoreMode, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.artifacts import WORKSPACE_FILES, Artifact
from cdk.bundling import LAMBDA_ARTIFACT, LocalPythonBundling, docker_fallback_command
from cdk.constructs.nag import suppress
from reportgrid import resources as r

RUNTIME = lambda_.Runtime.PYTHON_3_12  # matches cdk.bundling.LAMBDA_PYTHON_VERSION
ARCHITECTURE = lambda_.Architecture.X86_64  # matches cdk.bundling.WHEEL_PLATFORM


def asset_excludes(artifact: Artifact) -> tuple[str, ...]:
    """Only these reach the bundler (and the asset fingerprint); .venv and the rest are
    never read. The Docker fallback runs cdk/artifacts.py, so it is staged too."""
    return (
        "*",
        *(f"!{source}" for source in artifact.sources),
        *(f"!{path}" for path in WORKSPACE_FILES),
        "!cdk/artifacts.py",
        "**/__pycache__",
    )


ASSET_EXCLUDES: tuple[str, ...] = asset_excludes(LAMBDA_ARTIFACT)


def bundled_code(project_dir: Path, artifact: Artifact = LAMBDA_ARTIFACT) -> lambda_.Code:
    """An artifact's code and locked runtime wheels (cdk.bundling, cdk.artifacts): by
    default `lambda`, the workers' code, the core and the API modules."""
    return lambda_.Code.from_asset(
        str(project_dir),
        exclude=list(asset_excludes(artifact)),
        ignore_mode=IgnoreMode.DOCKER,  # Docker semantics make "!dir" re-include a tree
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            local=LocalPythonBundling(project_dir, artifact),
            command=docker_fallback_command(artifact),
        ),
    )


# Lambda's /tmp when the function sets no ephemeral storage (512 MB, the minimum).
LAMBDA_EPHEMERAL_STORAGE_MIB = 512
# Lambda gives one full vCPU at 1,769 MB of memory, in proportion below and above it
# (Lambda docs, "Configuring Lambda function memory").
LAMBDA_MIB_PER_VCPU = 1769


def worker_size_environment(*, memory_mib: int, vcpus: int, disk_mib: int) -> dict[str, str]:
    """The worker's size as the engine reads it (reportgrid.settings), from the template."""
    return {
        r.ENV.WORKER_MEMORY_MIB: str(memory_mib),
        r.ENV.WORKER_VCPUS: str(vcpus),
        r.ENV.WORKER_DISK_MIB: str(disk_mib),
    }


def python_function(
    scope: Construct,
    *,
    code: lambda_.Code,
    handler: str,
    service: str,
    environment: Mapping[str, str],
    memory_mib: int,
    timeout_seconds: int = r.LAMBDA_TIMEOUT_SECONDS,
    vpc: ec2.IVpc | None = None,
    reserved_concurrency: int | None = None,
) -> lambda_.Function:
    """A function of the bundled code, logging to its own group for a month, traced, with
    Powertools' service name set (ENV.SERVICE_NAME); `reserved_concurrency` caps (and
    reserves) its concurrent executions."""
    log_group = logs.LogGroup(
        scope,
        "Logs",
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
    )
    function = lambda_.Function(
        scope,
        "Function",
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=handler,
        code=code,
        timeout=Duration.seconds(timeout_seconds),
        memory_size=memory_mib,
        environment={**environment, r.ENV.SERVICE_NAME: service},
        vpc=vpc,
        vpc_subnets=(
            ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if vpc else None
        ),
        log_group=log_group,
        tracing=lambda_.Tracing.ACTIVE,
        reserved_concurrent_executions=reserved_concurrency,
    )
    suppress(
        function,
        "AwsSolutions-L1",
        "Pinned to Python 3.12: the wheels are bundled for cp312 manylinux x86_64 "
        "(cdk.bundling) and the service is tested on it; moving runtimes is a deliberate "
        "change of both.",
    )
    if function.role is not None:
        suppress(
            function.role,
            "AwsSolutions-IAM5",
            f"Active tracing of {service}: X-Ray PutTraceSegments/PutTelemetryRecords accept "
            "no resource but *.",
            findings=["Resource::*"],
        )
    managed = ["AWSLambdaBasicExecutionRole", *(["AWSLambdaVPCAccessExecutionRole"] if vpc else [])]
    suppress(
        function,
        "AwsSolutions-IAM4",
        f"{' and '.join(managed)}: AWS's minimal managed policies for the logs"
        f"{' and VPC ENIs' if vpc else ''} of the {service} function.",
        findings=[
            f"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/{name}" for name in managed
        ],
    )
    return function
