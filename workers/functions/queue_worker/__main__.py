"""`python -m functions.queue_worker`: the Fargate queue worker. Settings come from the
environment (reportgrid.resources.ENV); SIGTERM stops it gracefully with exit code 0."""

from __future__ import annotations

import logging
import os
import sys

from aws_lambda_powertools import Metrics

from functions.clients import client
from functions.notify import Notifier
from functions.process import configure_logging, settings_or_exit, stop_on_signals
from functions.queue_worker.pool import GeneratorPool
from functions.queue_worker.worker import QueueWorker
from functions.runner import Runner, Services
from functions.segments import ECS_ORIGIN, SegmentSender
from functions.store import store_for
from functions.tenant_slots import slots_for
from reportgrid import resources

log = logging.getLogger("functions.queue_worker")


def main() -> int:
    configure_logging()
    settings = settings_or_exit(log, "heavy_queue_url")
    assert settings.heavy_queue_url is not None

    pool = GeneratorPool(settings.worker_concurrency)
    ddb = client("dynamodb", settings)
    services = Services(
        settings=settings,
        store=store_for(settings, ddb),
        s3=client("s3", settings),
        notifier=Notifier(settings.redis_url),
        slots=slots_for(settings, ddb),
    )
    metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service=resources.SERVICE_QUEUE_WORKER)
    segments = SegmentSender.from_environment(
        name=resources.SERVICE_QUEUE_WORKER, origin=ECS_ORIGIN
    )
    sqs = client("sqs", settings)
    segments.instrument(ddb, services.s3, sqs)
    worker = QueueWorker(
        Runner(
            services,
            execute=pool,
            owner_prefix=f"fargate:{settings.region}",
            concurrency=settings.worker_concurrency,
        ),
        sqs=sqs,
        queue_url=settings.heavy_queue_url,
        concurrency=settings.worker_concurrency,
        lease_seconds=settings.worker_lease_seconds,
        wait_seconds=settings.queue_wait_seconds,
        metrics=metrics,
        segments=segments,
    )

    stop_on_signals(log, worker.stop, "finishing held reports, taking no new ones")
    log.info("queue worker polling %s", settings.heavy_queue_url)
    released = worker.run()
    metrics.flush_metrics()
    services.notifier.close()
    log.info("queue worker stopped (%d messages released)", released)
    if released:
        # Reports still run in the pool; their messages are back on the queue. Leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    pool.shutdown(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
