"""The CloudWatch Logs Insights queries of an investigation, in one place: the regional
stacks save them (AWS::Logs::QueryDefinition, cdk/constructs/log_queries.py) and
`reportgrid trace` runs `report_life` itself, so the console and the CLI ask the same
question.

The fields a log line about a report carries (JSON keys; docs/OBSERVABILITY.md says which
lines carry them today): REPORT_FIELDS. A saved query cannot take parameters, so the saved
ones that need a value hold a placeholder (`PLACEHOLDER_*`) to replace in the console.
No typer, no rich: the CDK app imports this module."""

from __future__ import annotations

import re
from typing import Final

# The JSON fields of a log line about a report (Powertools `extra=` / `append_keys`).
REPORT_FIELDS: Final = (
    "component",
    "report_id",
    "tenant",
    "home_region",
    "region",
    "event",
    "ts",
    "trace_id",
)
QUERY_NAME_PREFIX: Final = "reportgrid/"
PLACEHOLDER_REPORT: Final = "rpt_REPLACEME"
PLACEHOLDER_TENANT: Final = "REPLACE_TENANT"
# Only report ids go into a query string (no quoting games): rpt_ + base32.
_REPORT_ID: Final = re.compile(r"rpt_[A-Za-z0-9]{1,64}")
# At most this many events of one report come back (StartQuery's limit is 10 000).
REPORT_LIFE_LIMIT: Final = 10_000


def check_report_id(report_id: str) -> str:
    if not _REPORT_ID.fullmatch(report_id):
        raise ValueError(f"{report_id!r} is not a report id (rpt_...)")
    return report_id


def report_life(report_id: str) -> str:
    """Every log event that names the report, oldest first. By substring, not by field:
    today's lines name the id in their text as often as in a field."""
    check_report_id(report_id)
    return (
        "fields @timestamp, @log, @logStream, @message"
        f' | filter @message like "{report_id}"'
        " | sort @timestamp asc"
        f" | limit {REPORT_LIFE_LIMIT}"
    )


def _saved_report_life() -> str:
    return report_life(PLACEHOLDER_REPORT)


ERRORS_BY_CODE: Final = (
    "fields @timestamp, @log, code, method, service"
    ' | filter level in ["ERROR", "WARNING", "CRITICAL"] or @message like / (ERROR|WARNING) /'
    ' | stats count(*) as errors by coalesce(code, "-") as status,'
    " coalesce(method, service, @log) as where"
    " | sort errors desc"
)
SLOWEST_REPORTS: Final = (
    "fields @timestamp, report_id, tenant, home_region, region, state,"
    " time_to_terminal_ms, duration_ms"
    ' | filter event = "terminal" and ispresent(time_to_terminal_ms)'
    " | sort time_to_terminal_ms desc"
    " | limit 50"
)
TENANT_ACTIVITY: Final = (
    "fields @timestamp, @log, component, event, method, code, report_id, @message"
    f' | filter tenant = "{PLACEHOLDER_TENANT}"'
    " | sort @timestamp desc"
    " | limit 1000"
)
# The standby's takeover line today: "taking over report <id> from <home region>".
TAKEOVERS: Final = (
    "fields @timestamp, @log, @message"
    ' | filter event = "takeover" or @message like /taking over report/'
    ' | parse @message "taking over report * from * {" as taken_report, taken_from'
    " | fields coalesce(report_id, taken_report) as report,"
    " coalesce(home_region, taken_from) as home"
    " | sort @timestamp desc"
    " | limit 200"
)

# name (after QUERY_NAME_PREFIX) -> query string, as saved in every region.
SAVED_QUERIES: Final = {
    "errors-by-code": ERRORS_BY_CODE,
    "slowest-reports": SLOWEST_REPORTS,
    "tenant-activity": TENANT_ACTIVITY,
    "takeovers": TAKEOVERS,
    "report-life": _saved_report_life(),
}
