"""The stream worker: the Lambda on the Kinesis task stream (light kinds run here, heavy
ones are forwarded to the heavy queue)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.config import Capacity
from cdk.constructs.python_function import (
    LAMBDA_EPHEMERAL_STORAGE_MIB,
    LAMBDA_MIB_PER_VCPU,
    python_function,
    worker_size_environment,
)
from reportgrid import resources as r

HANDLER = "functions.stream_worker.handler.handler"


class StreamWorker(Construct):
    """Exposes `function` and `event_source` for the stack's grants and alarms."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        stream: kinesis.IStream,
        failure_queue: sqs.IQueue,
        vpc: ec2.IVpc,
        environment: Mapping[str, str],
        capacity: Capacity,
    ) -> None:
        super().__init__(scope, id_)
        self.function = python_function(
            self,
            code=code,
            handler=HANDLER,
            service=r.SERVICE_STREAM_WORKER,
            environment={
                **environment,
                **worker_size_environment(
                    memory_mib=capacity.lambda_memory_mib,
                    vcpus=max(1, round(capacity.lambda_memory_mib / LAMBDA_MIB_PER_VCPU)),
                    disk_mib=LAMBDA_EPHEMERAL_STORAGE_MIB,
                ),
            },
            memory_mib=capacity.lambda_memory_mib,
            # In the VPC to reach Valkey (publishes state changes); AWS APIs via endpoints.
            vpc=vpc,
        )
        self.event_source = sources.KinesisEventSource(
            stream,
            # Tasks are a log: never skip what was written before the mapping existed.
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=capacity.lambda_batch_size,
            max_batching_window=Duration.seconds(1),
            parallelization_factor=capacity.lambda_parallelization_factor,
            # A poison record is isolated by halving the batch, retried a bounded number of
            # times, dropped after a bounded age, and its metadata kept on the failure queue
            # (which the stream-failure drain re-drives).
            bisect_batch_on_error=True,
            retry_attempts=capacity.lambda_max_retries,
            max_record_age=Duration.hours(capacity.lambda_max_record_age_hours),
            report_batch_item_failures=True,
            on_failure=sources.SqsDlq(failure_queue),
        )
        self.function.add_event_source(self.event_source)
