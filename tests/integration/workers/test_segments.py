"""The workers' X-Ray segments as the daemon receives them: a real UDP socket on 127.0.0.1
stands in for the daemon (the wire format is a JSON header line and the segment document,
one datagram each); the reports run through the queue worker's loop, the stream worker's
handler and the standby's takeover against the moto server, their tasks carrying the
trace header the edge writes for a caller's `x-amzn-trace-id`."""

from __future__ import annotations

import collections
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from functions.queue_worker.worker import QueueWorker
from functions.runner import Runner, Services
from functions.segments import ECS_ORIGIN, SegmentSender
from functions.standby.__main__ import SEGMENT_NAME as STANDBY_SEGMENT
from functions.standby.worker import StandbyWorker
from functions.store import store_for
from functions.stream_worker import handler as stream
from reportgrid import tasks, tracing
from reportgrid.local.bootstrap import client
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from tests.integration.workers.conftest import Region, make_task
from tests.integration.workers.test_stream_handler import LambdaContext, _event

EDGE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
EDGE_PARENT = "53995c3f42cd8ad8"


class Daemon:
    """A UDP listener in the daemon's place."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(10)
        self.address: tuple[str, int] = self.socket.getsockname()

    def segment(self) -> dict[str, Any]:
        data, _ = self.socket.recvfrom(65536)
        header, _, body = data.partition(b"\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        found: dict[str, Any] = json.loads(body)
        return found

    def nothing_within(self, seconds: float) -> bool:
        self.socket.settimeout(seconds)
        try:
            self.socket.recvfrom(65536)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    found = Daemon()
    yield found
    found.socket.close()


def _traced(task: TaskRecord, header: str) -> TaskRecord:
    # What the edge writes for a caller's header (grpc_edge: tracing.task_header).
    task.trace_header = tracing.task_header([(tracing.XRAY_METADATA, header)])
    return task


def _run_on_queue_worker(
    region: Region, sender: SegmentSender, task: TaskRecord, services: Services | None = None
) -> None:
    assert region.settings.heavy_queue_url is not None
    worker = QueueWorker(
        Runner(services or region.services),
        sqs=region.sqs,
        queue_url=region.settings.heavy_queue_url,
        concurrency=1,
        lease_seconds=3,
        wait_seconds=1,
        segments=sender,
    )
    region.sqs.send_message(
        QueueUrl=region.settings.heavy_queue_url, MessageBody=tasks.encode_text(task)
    )
    loop = threading.Thread(target=worker.run, kwargs={"stop_grace_seconds": 10})
    loop.start()
    try:
        assert region.wait_for(task.report_id, lambda r: r.terminal).state is State.SUCCEEDED
    finally:
        worker.stop()
        loop.join(15)


def test_queue_worker_sends_the_reports_segment_in_the_edges_trace(
    region: Region, daemon: Daemon
) -> None:
    sender = SegmentSender(daemon.address, name="reportgrid-queue-worker", origin=ECS_ORIGIN)
    ddb = client("dynamodb", region.aws.region, region.aws.endpoint_url)
    # As functions.queue_worker's main builds them: the store's hot calls on the lean client.
    services = replace(region.services, store=store_for(region.settings, ddb))
    sender.instrument(ddb, services.s3, region.sqs)
    task = _traced(
        make_task(region.settings, "synthetic_heavy", {"output_rows": 3}),
        f"Root={EDGE_ROOT};Parent={EDGE_PARENT};Sampled=1",
    )
    _run_on_queue_worker(region, sender, task, services)
    segment = daemon.segment()
    assert (segment["trace_id"], segment["parent_id"]) == (EDGE_ROOT, EDGE_PARENT)
    assert segment["name"] == "reportgrid-queue-worker"
    assert segment["origin"] == ECS_ORIGIN
    assert segment["annotations"]["report_id"] == task.report_id
    assert segment["annotations"]["outcome"] == "SUCCEEDED"
    assert segment["start_time"] < segment["end_time"]
    # The run's AWS calls from its thread, each a subsegment inside the segment's time
    calls = collections.Counter((c["name"], c["aws"]["operation"]) for c in segment["subsegments"])
    assert ("DynamoDB", "GetItem") in calls, calls
    # The claim's (through boto3: the first PutItem judges the grant) and the terminal
    # write's (through the lean client, announced on the boto3 client's emitter).
    assert calls["DynamoDB", "PutItem"] == 2, calls
    for call in segment["subsegments"]:
        assert segment["start_time"] <= call["start_time"] <= call["end_time"]
        assert call["end_time"] <= segment["end_time"]


def test_a_trace_sampled_out_upstream_sends_nothing(region: Region, daemon: Daemon) -> None:
    sender = SegmentSender(daemon.address, name="reportgrid-queue-worker")
    task = _traced(
        make_task(region.settings, "synthetic_heavy", {"output_rows": 1}),
        f"Root={EDGE_ROOT};Parent={EDGE_PARENT};Sampled=0",
    )
    _run_on_queue_worker(region, sender, task)
    assert daemon.nothing_within(0.5)


def _uploaded(xray: Any, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The segment documents X-Ray holds for these traces, by report id."""
    answer = xray.batch_get_traces(TraceIds=trace_ids)
    documents = [json.loads(s["Document"]) for t in answer["Traces"] for s in t["Segments"]]
    return {d["annotations"]["report_id"]: d for d in documents}


def test_stream_worker_uploads_one_segment_per_light_report_in_its_own_trace(
    region: Region, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    roots = ["1-5759e988-000000000000000000000001", "1-5759e988-000000000000000000000002"]
    light = [
        _traced(
            make_task(region.settings, "synthetic", {"output_rows": 2, "seed": n}),
            f"Root={root};Parent={EDGE_PARENT};Sampled=1",
        )
        for n, root in enumerate(roots)
    ]
    endpoint = region.settings.aws_endpoint_url
    assert endpoint is not None
    xray = client("xray", region.settings.region, endpoint)
    stream.configure(
        stream.Dependencies(
            runner=Runner(region.services, owner_prefix="lambda-test"),
            sqs=region.sqs,
            heavy_queue_url=region.settings.heavy_queue_url,
            # As in Lambda (SegmentSender.for_lambda): through PutTraceSegments, not the
            # Lambda daemon, which takes only the invocation's own segment.
            segments=SegmentSender(None, name=stream.SEGMENT_NAME, api=xray),
        )
    )
    try:
        event, _ = _event(region, [tasks.encode(t) for t in light])
        assert stream.handler(event, LambdaContext())["batchItemFailures"] == []
    finally:
        stream.configure(None)
    # Uploaded by the time the handler returned (Lambda freezes the process after it)
    segments = _uploaded(xray, roots)
    assert set(segments) == {t.report_id for t in light}
    for task, root in zip(light, roots, strict=True):
        segment = segments[task.report_id]
        assert (segment["trace_id"], segment["parent_id"]) == (root, EDGE_PARENT)
        assert segment["name"] == stream.SEGMENT_NAME
        assert segment["annotations"]["outcome"] == "SUCCEEDED"
        assert segment["annotations"]["lambda_request_id"] == "req-1"
    # ...and each light report's claim is a `picked_up` line, like the queue worker's
    claimed = [vars(r) for r in caplog.records if getattr(r, "event", None) == "picked_up"]
    assert sorted(f["report_id"] for f in claimed) == sorted(t.report_id for t in light)
    assert {f["trace_id"] for f in claimed} == set(roots)


def test_the_standbys_takeover_is_a_segment_in_the_reports_trace(
    region: Region, daemon: Daemon
) -> None:
    # A mirrored task of a peer region that never beat (lost), past the mirror grace
    task = _traced(
        make_task(region.settings, "synthetic", {"output_rows": 2}),
        f"Root={EDGE_ROOT};Parent={EDGE_PARENT};Sampled=1",
    )
    task.home_region = "eu-west-1"
    task.mirrored = True
    task.accept_time.FromMilliseconds(task.accept_time.ToMilliseconds() - 600_000)
    queue = region.aws.standby_queue_url
    region.sqs.send_message(QueueUrl=queue, MessageBody=tasks.encode_text(task))
    (message,) = region.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]
    standby = StandbyWorker(
        Runner(region.services, owner_prefix="standby-test"),
        sqs=region.sqs,
        queue_url=queue,
        concurrency=1,
        lease_seconds=3,
        grace_seconds=1,
        margin_seconds=0.1,
        last_beat=lambda _region: None,
        wait_seconds=0,
        segments=SegmentSender(daemon.address, name=STANDBY_SEGMENT, origin=ECS_ORIGIN),
    )
    assert standby.handle(message) == "ran-succeeded"
    segment = daemon.segment()
    assert (segment["trace_id"], segment["parent_id"]) == (EDGE_ROOT, EDGE_PARENT)
    assert segment["name"] == "reportgrid-standby-worker"
    assert segment["annotations"]["takeover"] is True
    assert segment["annotations"]["home_region"] == "eu-west-1"
    assert segment["annotations"]["outcome"] == "SUCCEEDED"


def test_the_queue_workers_terminal_line_has_time_to_terminal(
    region: Region, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="functions.queue_worker.worker")
    task = make_task(region.settings, "synthetic_heavy", {"output_rows": 1})
    _run_on_queue_worker(region, SegmentSender(None, name="w"), task)
    (line,) = (r.getMessage() for r in caplog.records if r.getMessage().startswith("terminal "))
    fields = json.loads(line.partition(" ")[2])  # tracing.log_step: "<event> {json}"
    assert fields["report_id"] == task.report_id
    assert 0 <= fields["time_to_terminal_ms"] < 60_000
