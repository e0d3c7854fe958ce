"""A report taken over by the peer region's standby, as `reportgrid trace` shows it: one
timeline with the home region's steps and the peer's, one trace id throughout.

Two regions on one moto server (the `pair` fixture). The home region's queue worker picks
the task up and its run breaks (the region going down: its process pool dies), then the
peer's standby worker takes the mirrored copy over and ends it. Each worker logs with the
format the local region's processes use, into <state>/logs as `make dev` lays them out
(queue-worker-a.log for the first region, standby-b.log for the second)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from functions.queue_worker.worker import QueueWorker
from reportgrid import tasks, tracing
from reportgrid.cli import trace
from tests.integration.multiregion.conftest import HOME, PEER, Pair, make_task
from tests.integration.multiregion.test_takeover import _mirrored_message, _standby

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # functions/process.py


@contextmanager
def _logs_to(path: Path, name: str) -> Iterator[None]:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _broken_run(*_args: Any, **_kwargs: Any) -> Any:
    raise BrokenProcessPool("the home region went down mid-run")


def test_a_taken_over_reports_trace_shows_both_regions_in_order(pair: Pair, tmp_path: Path) -> None:
    home, peer = pair.home, pair.peer
    logs = tmp_path / "logs"
    logs.mkdir()
    # Given a task the home edge accepted with a trace context, on the home heavy queue
    task = make_task(home.settings, seed=3, age_seconds=5)
    task.trace_header = tracing.mint().header()
    home.sqs.send_message(QueueUrl=home.aws.heavy_queue_url, MessageBody=tasks.encode_text(task))
    received = home.sqs.receive_message(
        QueueUrl=home.aws.heavy_queue_url, WaitTimeSeconds=2, VisibilityTimeout=30
    )["Messages"][0]
    runner = home.runner("queue")
    runner.run = _broken_run  # type: ignore[method-assign]
    worker = QueueWorker(
        runner,
        sqs=home.sqs,
        queue_url=home.aws.heavy_queue_url,
        concurrency=1,
        lease_seconds=home.settings.worker_lease_seconds,
        wait_seconds=0,
    )
    # When the home worker picks it up and breaks, and the peer's standby takes it over
    with _logs_to(logs / "queue-worker-a.log", "functions.queue_worker"):
        worker.handle(received)
    message: Any = _mirrored_message(peer, task)
    with _logs_to(logs / "standby-b.log", "functions.standby"):
        assert _standby(peer).handle(message) == "ran-succeeded"
    # Then the trace is one timeline: the home region's step, then the peer's
    steps = trace.timeline(trace.local_steps(logs, task.report_id, [HOME, PEER]))
    seen = [(s["region"], s["fields"].get("event")) for s in steps if s["fields"]]
    assert seen == [(HOME, "picked_up"), (PEER, "takeover"), (PEER, "terminal")], steps
    assert [s["at_ms"] for s in steps] == sorted(s["at_ms"] for s in steps)
    assert all(s["delta_ms"] >= 0 for s in steps)
    ids = {s["fields"]["trace_id"] for s in steps if s["fields"]}
    assert ids == {tracing.trace_id(task)}
    assert all(s["fields"]["home_region"] == HOME for s in steps if s["fields"])
