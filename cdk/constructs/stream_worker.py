"""The stream worker: the Lambda on the Kinesis task stream (light kinds run here, heavy
ones are forwarded to the heavy queue)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import BundlingOptions, Duration, IgnoreMode, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.bundling import CODE_PACKAGES, LocalPythonBundling, docker_fallback_command
from cdk.config import Capacity
from cdk.constructs.nag import suppress
from reportgrid import resources as r

HANDLER = "functions.stream_worker.handler.handler"
RUNTIME = lambda_.Runtime.PYTHON_3_12  # matches cdk.bundling.LAMBDA_PYTHON_VERSION
ARCHITECTURE = lambda_.Architecture.X86_64  # matches cdk.bundling.WHEEL_PLATFORM
# Only these reach the bundler (and the asset fingerprint); .venv and the rest are never read.
ASSET_EXCLUDES: tuple[str, ...] = (
    "*",
    *(f"!{package}" for package in CODE_PACKAGES),
    "!pyproject.toml",
    "!uv.lock",
    "!README.md",
    "**/__pycache__",
)


class StreamWorker(Construct):
    """Exposes `function` and `event_source` for the stack's grants and alarms."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        project_dir: Path,
        stream: kinesis.IStream,
        failure_queue: sqs.IQueue,
        vpc: ec2.IVpc,
        environment: Mapping[str, str],
        capacity: Capacity,
    ) -> None:
        super().__init__(scope, id_)
        code = lambda_.Code.from_asset(
            str(project_dir),
            exclude=list(ASSET_EXCLUDES),
            ignore_mode=IgnoreMode.DOCKER,  # Docker semantics make "!dir" re-include a tree
            bundling=BundlingOptions(
                image=RUNTIME.bundling_image,
                local=LocalPythonBundling(project_dir),
                command=docker_fallback_command(),
            ),
        )
        log_group = logs.LogGroup(
            self,
            "Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=code,
            timeout=Duration.seconds(r.LAMBDA_TIMEOUT_SECONDS),
            memory_size=capacity.lambda_memory_mib,
            environment={**environment, r.ENV.SERVICE_NAME: r.SERVICE_STREAM_WORKER},
            # In the VPC to reach Valkey (publishes state changes); AWS APIs via endpoints.
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        self.event_source = sources.KinesisEventSource(
            stream,
            # Tasks are a log: never skip what was written before the mapping existed.
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=capacity.lambda_batch_size,
            max_batching_window=Duration.seconds(1),
            parallelization_factor=capacity.lambda_parallelization_factor,
            # A poison record is isolated by halving the batch, retried a bounded number of
            # times, dropped after a bounded age, and its metadata kept on the failure queue.
            bisect_batch_on_error=True,
            retry_attempts=capacity.lambda_max_retries,
            max_record_age=Duration.hours(capacity.lambda_max_record_age_hours),
            report_batch_item_failures=True,
            on_failure=sources.SqsDlq(failure_queue),
        )
        self.function.add_event_source(self.event_source)
        suppress(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12: the wheels are bundled for cp312 manylinux x86_64 "
            "(cdk.bundling) and the service is tested on it; moving runtimes is a deliberate "
            "change of both.",
        )
        suppress(
            self.function,
            "AwsSolutions-IAM4",
            "AWSLambdaBasicExecutionRole and AWSLambdaVPCAccessExecutionRole are AWS's "
            "minimal policies for logging and VPC ENIs of this function.",
            findings=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole",
            ],
        )
