"""`python -m functions.standby`: the standby worker (a Fargate service beside the queue
worker). Settings come from the environment; SIGTERM stops it gracefully with exit 0."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from functions.clients import client
from functions.runner import Runner, Services
from functions.standby.heartbeat import RegionHeartbeat, last_beat_ms
from functions.standby.worker import StandbyWorker
from reportgrid import resources
from reportgrid.errors import SettingsError
from reportgrid.notify import Notifier
from reportgrid.settings import load_settings
from reportgrid.store import ReportStore

log = logging.getLogger("functions.standby")

STANDBY_SLOTS_PER_WORKER = 4


def main() -> int:
    logging.basicConfig(
        level=os.environ.get(resources.ENV.LOG_LEVEL, "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = load_settings()
    except SettingsError as err:
        log.error("%s", err.message)
        return 2
    if not settings.standby_queue_url:
        log.error("%s is required but not set", resources.ENV.STANDBY_QUEUE_URL)
        return 2
    ddb = client("dynamodb", settings)
    services = Services(
        settings=settings,
        store=ReportStore(ddb, settings.table_name),
        s3=client("s3", settings),
        notifier=Notifier(settings.redis_url),
    )
    worker = StandbyWorker(
        Runner(services, owner_prefix=f"standby:{settings.region}"),
        sqs=client("sqs", settings),
        queue_url=settings.standby_queue_url,
        # Most of a standby slot's time is the post-claim margin wait, not work.
        concurrency=settings.worker_concurrency * STANDBY_SLOTS_PER_WORKER,
        lease_seconds=settings.worker_lease_seconds,
        grace_seconds=settings.mirror_grace_seconds,
        margin_seconds=settings.standby_margin_seconds,
        wait_seconds=settings.queue_wait_seconds,
        last_beat=lambda region: last_beat_ms(ddb, settings.table_name, region),
    )
    heartbeat = RegionHeartbeat(ddb, settings.table_name, settings.region).start()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing held reports, taking no new ones", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("standby worker polling %s", settings.standby_queue_url)
    worker.run()
    heartbeat.stop()
    services.notifier.close()
    log.info("standby worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
