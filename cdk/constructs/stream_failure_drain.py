"""The stream-failure drain: a Lambda on the stream-failure queue, where the Kinesis event
sources (stream worker, task mirror) put the metadata of batches they gave up on. It reads
those records back from the stream (shard + sequence range) and re-drives their tasks.

Outside the VPC: it calls AWS APIs only (Kinesis, SQS, DynamoDB), never the cache.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.constructs.python_function import python_function
from reportgrid import resources as r

HANDLER = "functions.stream_failures.handler.handler"
SERVICE = r.SERVICE_STREAM_FAILURES
MEMORY_MIB = 512
BATCH_SIZE = 10


class StreamFailureDrain(Construct):
    """Exposes `function` and `event_source` for the stack's grants and alarms."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        failure_queue: sqs.IQueue,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.function = python_function(
            self,
            code=code,
            handler=HANDLER,
            service=SERVICE,
            environment=environment,
            memory_mib=MEMORY_MIB,
            timeout_seconds=r.STREAM_FAILURE_TIMEOUT_SECONDS,
        )
        # One failed message is retried alone (ReportBatchItemFailures); after the failure
        # queue's max receives it stops in that queue's own DLQ.
        self.event_source = sources.SqsEventSource(
            failure_queue, batch_size=BATCH_SIZE, report_batch_item_failures=True
        )
        self.function.add_event_source(self.event_source)
