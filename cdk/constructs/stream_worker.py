"""The stream worker: the Lambda on the Kinesis task stream (light kinds run here, heavy
ones are forwarded to the heavy queue).

With `live_alias` the stream is read through the alias `live`, which points at the version
published by this deploy (CodeDeploy shifts it, cdk/stacks/region/rollout.py); without it,
through the function itself ($LATEST).

The event-source mapping keeps its construct path (and so its logical id) either way. A
mapping built by `alias.add_event_source` would sit under the alias: a new logical id, so
CloudFormation would create a new mapping and delete the old one, and a new Kinesis mapping
starts at its StartingPosition (TRIM_HORIZON: every task still in the stream, run again)
instead of the old mapping's checkpoints. Moving the same mapping to the alias is an update
in place: FunctionName is not a create-only property of AWS::Lambda::EventSourceMapping
(EventSourceArn and StartingPosition are), and UpdateEventSourceMapping changes "which
function will receive the stream records" without "losing your position in the stream"
(docs.aws.amazon.com/lambda/latest/dg/API_UpdateEventSourceMapping.html).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Names
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
    """Exposes `function`, `alias` (None without `live_alias`) and `event_source_mapping`
    for the stack's grants, alarms and rollout."""

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
        live_alias: bool = False,
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
        self.alias = (
            lambda_.Alias(self, "Live", alias_name="live", version=self.function.current_version)
            if live_alias
            else None
        )
        # What KinesisEventSource.bind does (aws-lambda-event-sources kinesis.ts), under the
        # id it uses, on the function's scope (see the module docstring).
        self.event_source_mapping = lambda_.EventSourceMapping(
            self.function,
            f"KinesisEventSource:{Names.node_unique_id(stream.node)}",
            target=self.alias or self.function,
            event_source_arn=stream.stream_arn,
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
        stream.grant_read(self.function)
