"""The local SQS event source for the drain: long-polls the stream-failure queue and invokes
the real handler with events shaped exactly as Lambda's SQS events, honouring
ReportBatchItemFailures: the messages the response does not name are deleted, the named
ones (or all, when the handler raises) stay and come back after their visibility timeout;
after the queue's maxReceiveCount SQS moves them to its DLQ, as in AWS.

Local only (`python -m reportgrid.local.stream_failure_drain`, started by `reportgrid-dev`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid.local.bootstrap import LOCAL_ACCOUNT
from reportgrid.local.kinesis_runner import LambdaContext, failed_identifiers

log = logging.getLogger(__name__)

FUNCTION_NAME: Final = "reportgrid-stream-failures"
Handler = Callable[[dict[str, Any], Any], Any]


def lambda_sqs_record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """A record of a Lambda SQS event, as the service shapes it from a received message."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            name: attributes[name]
            for name in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
            )
            if name in attributes
        },
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsEventSource:
    """Feeds one queue's messages to a handler, as Lambda's SQS event source does."""

    def __init__(
        self,
        handler: Handler,
        *,
        sqs: Any,
        queue_url: str,
        region: str,
        function_name: str = FUNCTION_NAME,
        batch_size: int = 10,
        wait_seconds: int = 1,
        visibility_timeout: int | None = None,
        function_timeout_seconds: float = 60.0,
    ) -> None:
        self.handler = handler
        self._sqs = sqs
        self.queue_url = queue_url
        self.region = region
        self.function_name = function_name
        self._batch_size = batch_size
        self._wait_seconds = wait_seconds
        self._visibility_timeout = visibility_timeout
        self._timeout = function_timeout_seconds
        self.queue_arn: str = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.stopping = threading.Event()
        self.invocations = 0

    def poll_once(self) -> int:
        """One receive and, if it got messages, one invocation; returns how many."""
        kwargs: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": self._batch_size,
            "WaitTimeSeconds": self._wait_seconds,
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self._visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = self._visibility_timeout
        messages: list[dict[str, Any]] = self._sqs.receive_message(**kwargs).get("Messages", [])
        if not messages:
            return 0
        event = {
            "Records": [
                lambda_sqs_record(m, queue_arn=self.queue_arn, region=self.region) for m in messages
            ]
        }
        context = LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=(
                f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT}:function:{self.function_name}"
            ),
            memory_limit_in_mb=512,
            timeout_seconds=self._timeout,
        )
        self.invocations += 1
        try:
            failed = failed_identifiers(self.handler(event, context))
        except Exception:
            log.exception("the handler raised on %d message(s); all will be retried", len(messages))
            return len(messages)
        if failed is None:
            log.warning("malformed batchItemFailures; every message will be retried")
            return len(messages)
        done = [m for m in messages if m["MessageId"] not in set(failed)]
        if done:
            self._delete(done)
        return len(messages)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        reply = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        for entry in reply.get("Failed", []):
            # Delivered again later: the handler is idempotent.
            log.warning("could not delete a handled message: %s", entry.get("Code"))

    def run(self) -> None:
        """Poll until stopped; an unreachable queue is retried, not fatal."""
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except (ClientError, BotoCoreError):
                log.exception("polling %s failed; retrying in 1s", self.queue_url)
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
