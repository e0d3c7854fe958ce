"""`reportgrid trace` reads the per-report lines added for the events path and the heavy
terminal line: their component, their event and fields (time_to_terminal_ms, trace_id)."""

from __future__ import annotations

import json

from reportgrid.cli.trace import component_of_log_group, parse_line, timeline

REPORT = "rpt_0123456789ABCDEFGHJKMNPQRS"
TRACE = "1-5759e988-bd862e3fe1be46a994272793"


def test_the_events_and_webhook_log_groups_name_their_component() -> None:
    assert component_of_log_group("Reportgrid-eu-west-1-CompletionEventsLogs1A2B-x") == "events"
    assert component_of_log_group("Reportgrid-eu-west-1-WebhooksLogs9F8E-y") == "webhooks"
    assert component_of_log_group("Reportgrid-eu-west-1-SchedulerLogs7C6D-z") == "scheduler"


def test_the_publisher_line_and_a_heavy_terminal_line_are_steps_in_order() -> None:
    published = json.dumps(
        {
            "level": "INFO",
            "message": "event_published",
            "timestamp": "2026-12-02 18:34:30,586+0000",
            "service": "reportgrid-events",
            "event": "event_published",
            "report_id": REPORT,
            "trace_id": TRACE,
            "state": "SUCCEEDED",
            "event_id": "ab" * 16,
        }
    )
    fields = {"event": "terminal", "report_id": REPORT, "trace_id": TRACE}
    terminal = "2026-12-02T18:34:30.100Z INFO functions.queue_worker.worker terminal " + json.dumps(
        {**fields, "outcome": "SUCCEEDED", "time_to_terminal_ms": 8600}
    )
    steps = [
        parse_line(published, REPORT, component="", region="eu-west-1", source="events.log"),
        parse_line(terminal, REPORT, component="queue-worker", region="eu-west-1", source="w.log"),
    ]
    rows = timeline(s for s in steps if s is not None)
    assert [r["event"] for r in rows] == ["terminal", "event_published"]
    assert rows[0]["fields"]["time_to_terminal_ms"] == 8600
    assert rows[1]["component"] == "reportgrid-events"
    assert rows[1]["fields"]["state"] == "SUCCEEDED"
    assert {r["fields"]["trace_id"] for r in rows} == {TRACE}
