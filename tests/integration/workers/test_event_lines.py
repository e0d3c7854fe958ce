"""The per-report lines of the completion-event path, on the moto server: the publisher's
`event_published` line per event it put, and the webhook delivery's line, each naming the
report's trace id (the item's `trace_id` attribute, carried in the event detail), so
`reportgrid trace` and `filter trace_id = ...` find them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from functions.events import handler as events_handler
from functions.store import ReportStore
from functions.webhooks import handler as webhooks
from reportgrid import events, resources, tracing
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from tests.integration.events.test_publish import _Context, _lambda_records

TRACE = "1-5759e988-bd862e3fe1be46a994272793"


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The fields (Powertools `extra=`) of the captured lines of one `event`."""
    return [vars(r) for r in caplog.records if getattr(r, "event", None) == event]


def test_the_publisher_logs_one_line_per_published_event_with_the_trace_id(
    aws: RegionResources, caplog: pytest.LogCaptureFixture
) -> None:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    bridge = client("events", aws.region, aws.endpoint_url)
    before = len(_lambda_records(aws))
    store = ReportStore(ddb, aws.table_name, region=aws.region)
    task = TaskRecord(report_id="rep1", trace_header=f"Root={TRACE};Sampled=1")
    # The item as the first write stores it (tracing.item_attributes), then ended here.
    running = ReportRecord(
        "rep1",
        "acme",
        "summary",
        State.RUNNING,
        1,
        home_region=aws.region,
        region=aws.region,
        extra=tracing.item_attributes(task),
    )
    stored = store._put(None, running)
    assert stored is not None
    assert store._put(stored, stored.with_(state=State.SUCCEEDED, ended_ms=2)) is not None
    caplog.set_level(logging.INFO)
    events_handler.configure(
        events_handler.Dependencies(
            events=bridge, region=aws.region, bus_name=resources.EVENT_BUS_NAME
        )
    )
    try:
        reply = events_handler.handler({"Records": _lambda_records(aws)[before:]}, _Context())
    finally:
        events_handler.configure(None)
    assert reply == {"batchItemFailures": []}
    [line] = _lines(caplog, "event_published")
    assert line["report_id"] == "rep1"
    assert (line["tenant"], line["home_region"]) == ("acme", aws.region)
    assert (line["state"], line["trace_id"]) == ("SUCCEEDED", TRACE)
    assert line["event_id"] == events.event_id("rep1", State.SUCCEEDED)


def test_the_detail_names_the_trace_only_when_the_item_holds_one() -> None:
    plain = ReportRecord("r1", "acme", "summary", State.SUCCEEDED, 1)
    assert "trace_id" not in events.detail(plain, region="us-east-1")
    traced = plain.with_(extra={"trace_id": {"S": TRACE}})
    assert events.detail(traced, region="us-east-1")["trace_id"] == TRACE
    garbage = plain.with_(extra={"trace_id": {"S": "not-a-trace"}})
    assert "trace_id" not in events.detail(garbage, region="us-east-1")


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def test_a_webhook_delivery_line_names_the_reports_trace(
    aws: RegionResources, receiver: str, caplog: pytest.LogCaptureFixture
) -> None:
    record = ReportRecord(
        "rep2",
        "acme",
        "summary",
        State.SUCCEEDED,
        1,
        home_region=aws.region,
        notify_url=receiver,
        extra={"trace_id": {"S": TRACE}},
    )
    detail = events.detail(record, region=aws.region)
    body = json.dumps(
        {"source": resources.EVENT_SOURCE, "detail-type": "Report Succeeded", "detail": detail}
    )
    caplog.set_level(logging.INFO)
    webhooks.configure(
        webhooks.Dependencies(
            sqs=client("sqs", aws.region, aws.endpoint_url),
            tenant_webhooks=webhooks.TenantWebhooks(
                client("dynamodb", aws.region, aws.endpoint_url), aws.table_name
            ),
            queue_url=aws.webhook_queue_url,
            dlq_url=aws.webhook_dlq_url,
            root_secret=b"s" * 32,
            retry_window_seconds=60,
            backoff_base_seconds=1,
            allow_loopback=True,
        )
    )
    try:
        message = {
            "messageId": "m1",
            "receiptHandle": "h",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:reportgrid-webhooks",
            "awsRegion": aws.region,
        }
        reply = webhooks.handler({"Records": [message]}, _Context())  # type: ignore[arg-type]
    finally:
        webhooks.configure(None)
    assert reply == {"batchItemFailures": []}
    [line] = _lines(caplog, "webhook_delivered")
    assert (line["report_id"], line["tenant"], line["trace_id"]) == ("rep2", "acme", TRACE)
