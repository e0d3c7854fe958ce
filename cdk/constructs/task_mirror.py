"""The task mirror: a second Lambda consumer of the region's Kinesis task stream that
forwards every task to the peer region's standby queue, delayed by the mirror grace period
(the role Kafka MirrorMaker plays in the seed). Only in deployments of two or more regions.

It runs outside the VPC: it reaches no VPC resource (no cache), only AWS APIs, one of them
(the peer's SQS) in another region, which from the VPC would go through NAT.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.constructs.python_function import python_function

HANDLER = "functions.mirror.handler.handler"
# The handler's Powertools service (functions.mirror.handler.SERVICE; a test checks both).
SERVICE = "reportgrid-mirror"
MEMORY_MIB = 512  # decode + SendMessageBatch: I/O bound, no engine
BATCH_SIZE = 100
# A failed send fails only its record (ReportBatchItemFailures) and is retried; a batch
# that keeps failing is halved down to the record, retried this often, given up after an
# hour (a mirror that late no longer protects anything the home region has not done), and
# its metadata goes to the stream-failure queue.
MAX_RETRIES = 10
MAX_RECORD_AGE = Duration.hours(1)


class TaskMirror(Construct):
    """Exposes `function` and `event_source` for the stack's grants and alarms."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        stream: kinesis.IStream,
        failure_queue: sqs.IQueue,
        environment: Mapping[str, str],
        parallelization_factor: int,
    ) -> None:
        super().__init__(scope, id_)
        self.function = python_function(
            self,
            code=code,
            handler=HANDLER,
            service=SERVICE,
            environment=environment,
            memory_mib=MEMORY_MIB,
        )
        self.event_source = sources.KinesisEventSource(
            stream,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=BATCH_SIZE,
            max_batching_window=Duration.seconds(1),
            # Keeps pace with the stream worker on the same shards.
            parallelization_factor=parallelization_factor,
            bisect_batch_on_error=True,
            retry_attempts=MAX_RETRIES,
            max_record_age=MAX_RECORD_AGE,
            report_batch_item_failures=True,
            on_failure=sources.SqsDlq(failure_queue),
        )
        self.function.add_event_source(self.event_source)
