"""The task log and the queues: Kinesis stream, heavy and standby queues with DLQs, and the
queue (with its DLQ) that receives the stream consumers' given-up batches."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.constructs.nag import suppress
from reportgrid import resources as r

_RETENTION = Duration.days(14)  # SQS's maximum: a stuck report can always be inspected


def _queue_pair(scope: Construct, id_: str, *, name: str, dlq_name: str) -> sqs.Queue:
    dlq = sqs.Queue(
        scope,
        f"{id_}Dlq",
        queue_name=dlq_name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=_RETENTION,
    )
    return sqs.Queue(
        scope,
        id_,
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=_RETENTION,
        # AWS's advice: 6x the consumer's timeout. The worker receives with a short
        # visibility and extends it while it works (resources.HEAVY_VISIBILITY_TIMEOUT_SECONDS).
        visibility_timeout=Duration.seconds(r.HEAVY_VISIBILITY_TIMEOUT_SECONDS),
        dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=r.HEAVY_MAX_RECEIVES, queue=dlq),
    )


class Ingest(Construct):
    """Everything the edge writes to and the workers read from, in one region."""

    def __init__(self, scope: Construct, id_: str, *, shards: int) -> None:
        super().__init__(scope, id_)
        self.stream = kinesis.Stream(
            self,
            "TaskStream",
            stream_name=r.TASK_STREAM_NAME,
            # On-demand follows the edge's write rate without resharding; a fixed shard
            # count is cheaper at a steady, known load.
            stream_mode=(
                kinesis.StreamMode.PROVISIONED if shards else kinesis.StreamMode.ON_DEMAND
            ),
            shard_count=shards or None,
            # KMS with the AWS managed key (aws/kinesis): encrypted at rest, and producers and
            # the Lambda need no key grants.
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=Duration.hours(r.TASK_RETENTION_HOURS),
        )
        self.heavy_queue = _queue_pair(
            self, "HeavyQueue", name=r.HEAVY_QUEUE_NAME, dlq_name=r.HEAVY_DLQ_NAME
        )
        self.standby_queue = _queue_pair(
            self, "StandbyQueue", name=r.STANDBY_QUEUE_NAME, dlq_name=r.STANDBY_DLQ_NAME
        )
        self.heavy_dlq = self.heavy_queue.dead_letter_queue.queue  # type: ignore[union-attr]
        self.standby_dlq = self.standby_queue.dead_letter_queue.queue  # type: ignore[union-attr]
        # The Kinesis event sources' on-failure destination (metadata of the batches they
        # gave up on), drained by the stream-failure Lambda; what it cannot re-drive stops
        # in its own DLQ.
        self.failure_dlq = sqs.Queue(
            self,
            "StreamFailureQueueDlq",
            queue_name=r.STREAM_FAILURE_DLQ_NAME,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=_RETENTION,
        )
        self.failure_queue = sqs.Queue(
            self,
            "StreamFailureQueue",
            queue_name=r.STREAM_FAILURE_QUEUE_NAME,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=_RETENTION,
            # AWS's advice for a Lambda SQS event source: 6x the drain's timeout.
            visibility_timeout=Duration.seconds(r.STREAM_FAILURE_VISIBILITY_TIMEOUT_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=r.STREAM_FAILURE_MAX_RECEIVES, queue=self.failure_dlq
            ),
        )
        for dlq in (self.heavy_dlq, self.standby_dlq, self.failure_dlq):
            suppress(
                dlq,
                "AwsSolutions-SQS3",
                "This queue is itself a dead-letter destination; messages stop here for "
                "inspection and redrive.",
            )
