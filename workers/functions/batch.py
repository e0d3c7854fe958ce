"""What the batch handlers (events, mirror, stream failures, webhooks) share: their
dependencies built once per Lambda container or injected by a test (`Wired`), the partial
batch response Lambda reads (`partial_response`, Powertools BatchProcessor), and the whole
handler of an SQS source whose messages each succeed or fail alone (`sqs_batch_handler`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import (
    BasePartialBatchProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

T = TypeVar("T")


class Wired(Generic[T]):
    """A handler's dependencies: built by `build` on first use (so a settings error
    surfaces at the first invocation, not at import), then kept for the container's life
    (one set of clients per execution environment)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None

    def configure(self, value: T | None) -> None:
        """Inject the dependencies (tests point them at the moto server); None resets."""
        self._value = value

    def __call__(self) -> T:
        if self._value is None:
            self._value = self._build()
        return self._value


def partial_response(
    event: dict[str, Any],
    record_handler: Callable[[Any], Any],
    processor: BasePartialBatchProcessor,
    context: LambdaContext,
) -> dict[str, Any]:
    """Each record handled alone; the failed ones reported by id (batchItemFailures)."""
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )


def sqs_batch_handler(
    *,
    record_handler: Callable[[Any], Any],
    processor: BasePartialBatchProcessor,
    dependencies: Wired[Any],
    logger: Logger,
    metrics: Metrics,
    tracer: Tracer,
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda handler: metrics flushed, traced, the context logged; the dependencies
    built first (a settings error fails the invocation, not each message), then every
    message through `record_handler`."""

    @metrics.log_metrics
    @tracer.capture_lambda_handler
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        dependencies()
        return partial_response(event, record_handler, processor, context)

    return handler
