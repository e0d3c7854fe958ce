"""`python -m reportgrid.local.stream_failure_drain`: the drain in the local region. Polls the
stream-failure queue (settings from the environment) and invokes the real Lambda handler
with SQS events; SIGTERM/SIGINT stop it after the invocation in flight (exit 0)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from functions.clients import client
from functions.process import configure_logging, settings_or_exit, stop_on_signals
from functions.stream_failures.handler import handler
from reportgrid import resources
from reportgrid.local.sqs_source import SqsEventSource

log = logging.getLogger("reportgrid.local.stream_failure_drain")

# Locally a failed message comes back after this long (in AWS: the queue's visibility
# timeout, STREAM_FAILURE_VISIBILITY_TIMEOUT_SECONDS).
DEFAULT_LOCAL_VISIBILITY_SECONDS = 10


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--visibility-timeout", type=int, default=DEFAULT_LOCAL_VISIBILITY_SECONDS, metavar="S"
    )
    parser.add_argument("--wait-seconds", type=int, default=1, metavar="S")
    args = parser.parse_args(argv)
    configure_logging()
    settings = settings_or_exit(log, "stream_failure_queue_url", "heavy_queue_url")
    assert settings.stream_failure_queue_url is not None
    source = SqsEventSource(
        handler,
        sqs=client("sqs", settings),
        queue_url=settings.stream_failure_queue_url,
        region=settings.region,
        wait_seconds=args.wait_seconds,
        visibility_timeout=args.visibility_timeout,
        function_timeout_seconds=resources.STREAM_FAILURE_TIMEOUT_SECONDS,
    )

    stop_on_signals(log, source.stop, "stopping")
    log.info("draining %s", settings.stream_failure_queue_url)
    source.run()
    log.info("stopped after %d invocation(s)", source.invocations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
