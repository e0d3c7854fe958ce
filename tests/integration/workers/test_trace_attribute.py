"""The report item keeps the task's trace id from its first write to its terminal one
(functions/store.py _new_record: tracing.item_attributes), so the completion event made
from the item alone names the trace (reportgrid/events.py detail's optional trace_id)."""

from __future__ import annotations

from reportgrid import events, tracing
from reportgrid.states import State
from tests.integration.workers.conftest import Region, make_task

TRACE = "1-5759e988-bd862e3fe1be46a994272793"


def test_the_terminal_item_names_the_tasks_trace(region: Region) -> None:
    task = make_task(region.settings, "synthetic", {"output_rows": 2})
    task.trace_header = f"Root={TRACE};Parent=53995c3f42cd8ad8;Sampled=1"
    region.runner().run(task)
    record = region.get(task.report_id)
    assert record is not None
    assert record.state is State.SUCCEEDED
    assert tracing.stored_trace_id(record.extra) == TRACE
    assert events.detail(record, region=region.settings.region)["trace_id"] == TRACE
