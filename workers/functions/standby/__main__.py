"""`python -m functions.standby`: the standby worker (a Fargate service beside the queue
worker). Settings come from the environment; SIGTERM stops it gracefully with exit 0."""

from __future__ import annotations

import logging
import sys

from functions.clients import client
from functions.notify import Notifier
from functions.process import configure_logging, settings_or_exit, stop_on_signals
from functions.runner import Runner, Services
from functions.segments import ECS_ORIGIN, SegmentSender
from functions.standby.heartbeat import RegionHeartbeat, last_beat_ms
from functions.standby.worker import StandbyWorker
from functions.store import store_for

log = logging.getLogger("functions.standby")

STANDBY_SLOTS_PER_WORKER = 4
# Its X-Ray segments' name: its log service name (cdk/constructs/queue_worker.py).
SEGMENT_NAME = "reportgrid-standby-worker"


def main() -> int:
    configure_logging()
    settings = settings_or_exit(log, "standby_queue_url")
    assert settings.standby_queue_url is not None
    ddb = client("dynamodb", settings)
    services = Services(
        settings=settings,
        store=store_for(settings, ddb),
        s3=client("s3", settings),
        notifier=Notifier(settings.redis_url),
    )
    segments = SegmentSender.from_environment(name=SEGMENT_NAME, origin=ECS_ORIGIN)
    sqs = client("sqs", settings)
    segments.instrument(ddb, services.s3, sqs)
    worker = StandbyWorker(
        Runner(services, owner_prefix=f"standby:{settings.region}"),
        sqs=sqs,
        queue_url=settings.standby_queue_url,
        # Most of a standby slot's time is the post-claim margin wait, not work.
        concurrency=settings.worker_concurrency * STANDBY_SLOTS_PER_WORKER,
        lease_seconds=settings.worker_lease_seconds,
        grace_seconds=settings.mirror_grace_seconds,
        margin_seconds=settings.standby_margin_seconds,
        wait_seconds=settings.queue_wait_seconds,
        last_beat=lambda region: last_beat_ms(ddb, settings.table_name, region),
        segments=segments,
    )
    heartbeat = RegionHeartbeat(ddb, settings.table_name, settings.region).start()

    stop_on_signals(log, worker.stop, "finishing held reports, taking no new ones")
    log.info("standby worker polling %s", settings.standby_queue_url)
    worker.run()
    heartbeat.stop()
    services.notifier.close()
    log.info("standby worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
