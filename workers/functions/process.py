"""What every long-running worker process (`python -m functions.<name>`) does around its
loop: one log format, settings read once (exit 2 naming what is missing), a stop on
SIGTERM/SIGINT, and SQS polls short enough to notice that stop within a second."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import resources
from reportgrid.errors import SettingsError
from reportgrid.settings import Settings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

RECEIVE_COUNT: Final = "ApproximateReceiveCount"
# Each ReceiveMessage waits at most this long, so SIGTERM is noticed promptly.
POLL_SLICE_SECONDS: Final = 1


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get(resources.ENV.LOG_LEVEL, "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def settings_or_exit(log: logging.Logger, *required: str) -> Settings:
    """The settings, or exit code 2 with a message naming every problem. `required` names
    Settings fields this process cannot run without (e.g. "heavy_queue_url")."""
    try:
        settings = load_settings()
    except SettingsError as err:
        log.error("%s", err.message)
        raise SystemExit(2) from None
    missing = [getattr(resources.ENV, f.upper()) for f in required if not getattr(settings, f)]
    if missing:
        log.error("%s required but not set", " and ".join(missing))
        raise SystemExit(2)
    return settings


def stop_on_signals(log: logging.Logger, stop: Callable[[], None], doing: str) -> None:
    """Call `stop` on SIGTERM or SIGINT, saying what the process does while it stops."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: %s", signum, doing)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def receive(
    sqs: SQSClient,
    queue_url: str,
    *,
    count: int,
    wait_seconds: int,
    visibility_seconds: int,
    stopping: threading.Event,
    log: logging.Logger,
) -> list[MessageTypeDef]:
    """One short poll of a queue; a failed call is logged, waited out and returns nothing."""
    try:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=min(wait_seconds, POLL_SLICE_SECONDS),
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=[RECEIVE_COUNT],
            # A put-off task's count and first deferral (functions/deferral.py).
            MessageAttributeNames=["All"],
        )
    except (ClientError, BotoCoreError):
        log.warning("ReceiveMessage on %s failed; polling again", queue_url, exc_info=True)
        stopping.wait(1.0)
        return []
    return response.get("Messages", [])
