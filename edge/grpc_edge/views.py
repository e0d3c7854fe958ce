"""The `view` of a read (GetReport, WatchReport, ListReports): BASIC or FULL."""

from __future__ import annotations

from typing import Final

from reportgrid.errors import InvalidArgument
from reportgrid.v1 import reports_pb2 as pb

_VIEWS: Final = frozenset(pb.ReportView.values())


def is_full(view: int) -> bool:
    """True for REPORT_VIEW_FULL, False for BASIC (or unspecified); InvalidArgument on
    field `view` for a number that is no view (proto3 enums are open: any int32 arrives)."""
    if view not in _VIEWS:
        raise InvalidArgument.field(
            "view", f"{view} is not a view; use REPORT_VIEW_BASIC or REPORT_VIEW_FULL"
        )
    return view == pb.REPORT_VIEW_FULL
