"""The completion event's detail carries the report's own webhook and labels (the webhook
function POSTs to detail.notify_url before the tenant's default)."""

from __future__ import annotations

from reportgrid import events
from reportgrid.records import ReportRecord
from reportgrid.states import State


def _record(**changes: object) -> ReportRecord:
    return ReportRecord("r1", "acme", "summary", State.SUCCEEDED, 1_700_000_000_000, **changes)  # type: ignore[arg-type]


def test_the_detail_carries_the_notify_url_and_labels() -> None:
    record = _record(notify_url="https://hooks.example.com/r", labels={"team": "ops"})
    detail = events.detail(record, region="us-east-1")
    assert detail["notify_url"] == "https://hooks.example.com/r"
    assert detail["labels"] == {"team": "ops"}


def test_without_them_the_fields_are_present_and_empty() -> None:
    detail = events.detail(_record(), region="us-east-1")
    assert detail["notify_url"] is None
    assert detail["labels"] == {}
