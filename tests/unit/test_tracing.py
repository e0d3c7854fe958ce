"""The trace context the task record carries (reportgrid/tracing.py): the edge accepts a
caller's X-Ray header or W3C traceparent, mints one otherwise, and every worker line about a
report carries its ids."""

from __future__ import annotations

import json
import logging

import pytest

from reportgrid import tracing
from reportgrid.task.v1.task_pb2 import TaskRecord

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_an_xray_header_round_trips() -> None:
    found = tracing.parse_header(XRAY)
    assert found == tracing.TraceContext(
        "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8", True
    )
    assert found.header() == XRAY


def test_a_w3c_traceparent_is_the_same_trace_in_xray_form() -> None:
    found = tracing.parse_traceparent("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
    assert found is not None
    assert found.header() == XRAY


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Root=2-5759e988-bd862e3fe1be46a994272793",
        "Root=1-5759e988-bd862e3fe1be46a99427279",  # one digit short
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
        "Root=1-5759e988-bd862e3fe1be46a994272793;" + "x" * 300,
    ],
)
def test_a_bad_header_is_ignored_and_a_fresh_one_minted(bad: str) -> None:
    assert tracing.parse_header(bad) is None
    minted = tracing.from_metadata([("authorization", "Bearer k"), ("x-amzn-trace-id", bad)])
    assert tracing.parse_header(minted.header()) == minted
    assert minted.parent_id == ""
    assert minted.sampled is None


def test_the_callers_context_is_kept_xray_first() -> None:
    w3c = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    assert tracing.from_metadata([("traceparent", w3c)]).trace_id == (
        "1-0af76519-16cd43dd8448eb211c80319c"
    )
    assert tracing.from_metadata([("traceparent", w3c), ("x-amzn-trace-id", XRAY)]).header() == XRAY


def test_minted_ids_carry_the_time_and_differ() -> None:
    one, two = tracing.mint(0x5759E988), tracing.mint(0x5759E988)
    assert one.trace_id.startswith("1-5759e988-")
    assert one.trace_id != two.trace_id


def test_a_step_line_carries_the_reports_fields(caplog: pytest.LogCaptureFixture) -> None:
    task = TaskRecord(report_id="rpt_X", tenant="acme", home_region="eu-west-1", trace_header=XRAY)
    with caplog.at_level(logging.INFO):
        tracing.log_step(logging.getLogger("t"), "picked_up", task, receives=2)
    text, _, document = caplog.records[0].getMessage().partition(" ")
    assert text == "picked_up"
    assert json.loads(document) == {
        "event": "picked_up",
        "report_id": "rpt_X",
        "tenant": "acme",
        "home_region": "eu-west-1",
        "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "receives": 2,
    }
    # A task from an edge before the field: no trace id, never an error.
    assert tracing.report_fields(TaskRecord(report_id="rpt_Y"), "x")["trace_id"] == ""


def test_the_edges_task_header_is_the_callers_or_a_minted_one() -> None:
    assert tracing.task_header([("x-amzn-trace-id", XRAY)]) == XRAY
    minted = tracing.parse_header(tracing.task_header([("authorization", "Bearer k")]))
    assert minted is not None
    assert minted.trace_id.startswith("1-")
