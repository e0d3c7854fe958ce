"""Lambda handler of the completion-event publisher, on the reports table's stream.

The event-source mapping's filter (reportgrid.events.stream_filter_patterns) lets through
only report items that became terminal in a write made in this region; `announces` checks
the same again (the filter is the service's, this is ours). The batch's events go out in
PutEvents calls of at most 10 entries (functions/events/publish.py), never one call per
record. Each stream record succeeds or fails alone (Powertools BatchProcessor, reported by
sequence number): a refused entry fails its record, so Lambda delivers it again from there
— records before it are not sent again, those after it may be (at least once; consumers
dedupe by detail.event_id). An image that is not a report record is logged and skipped:
no retry could change it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.batch import Wired, partial_response
from functions.clients import client
from functions.events.publish import EventsClient, put_all
from reportgrid import events, resources
from reportgrid.settings import get_settings

logger = Logger(service=resources.SERVICE_EVENTS)
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service=resources.SERVICE_EVENTS)
tracer = Tracer(service=resources.SERVICE_EVENTS)
processor = BatchProcessor(
    event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
)

PUBLISHED = "EventsPublished"
REFUSED = "EventsRefused"
SKIPPED = "StreamRecordsSkipped"


class RetryRecord(Exception):
    """Fails one stream record so that Lambda delivers it again."""


@dataclass
class Dependencies:
    events: EventsClient
    region: str
    bus_name: str


def _build() -> Dependencies:
    settings = get_settings()
    return Dependencies(
        events=cast(EventsClient, client("events", settings)),
        region=settings.region,
        bus_name=settings.event_bus_name,
    )


dependencies = Wired(_build)
configure = dependencies.configure


def entries_of(
    raw_records: list[dict[str, Any]], *, region: str, bus_name: str
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """(sequence number, PutEvents entry) of each record that announces a terminal state
    here, and how many records announce nothing."""
    found: list[tuple[str, dict[str, Any]]] = []
    skipped = 0
    for raw in raw_records:
        data = raw.get("dynamodb", {})
        sequence = str(data.get("SequenceNumber", ""))
        try:
            new = events.image_record(data.get("NewImage"))
            old = events.image_record(data.get("OldImage"))
        except (KeyError, TypeError, ValueError):
            logger.exception("a stream record is not a report item", extra={"seq": sequence})
            skipped += 1
            continue
        if new is None or not events.announces(new, old, region=region):
            skipped += 1
            continue
        found.append((sequence, events.put_entry(new, region=region, bus_name=bus_name)))
    return found, skipped


def published_fields(entry: Mapping[str, Any]) -> dict[str, object]:
    """The `event_published` line's fields (reportgrid/tracing.py report_fields' names),
    from the entry's own detail: one json.loads of a few hundred bytes per event."""
    detail = json.loads(entry["Detail"])
    return {
        "event": "event_published",
        "report_id": detail["report_id"],
        "tenant": detail["tenant"],
        "home_region": detail.get("home_region") or "",
        "trace_id": detail.get("trace_id") or "",
        "state": detail["state"],
        "event_id": detail["event_id"],
    }


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = dependencies()
    entries, skipped = entries_of(
        event.get("Records", []), region=deps.region, bus_name=deps.bus_name
    )
    failed = put_all(deps.events, entries)
    for sequence, entry in entries:
        if sequence not in failed:
            logger.info("event_published", extra=published_fields(entry))
    metrics.add_metric(PUBLISHED, MetricUnit.Count, len(entries) - len(failed))
    metrics.add_metric(REFUSED, MetricUnit.Count, len(failed))
    metrics.add_metric(SKIPPED, MetricUnit.Count, skipped)

    def record_handler(record: DynamoDBRecord) -> str:
        sequence = str(record.raw_event.get("dynamodb", {}).get("SequenceNumber", ""))
        if sequence in failed:
            raise RetryRecord(f"publishing the event of stream record {sequence} failed")
        return "published"

    return partial_response(event, record_handler, processor, context)
