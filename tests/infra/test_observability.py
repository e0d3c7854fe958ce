"""Observability in the regional template: the saved Logs Insights queries over every
process's log group, the SLOs' burn-rate alarm pairs (metric math, thresholds, windows),
their AND composites and the fast burns' wiring into "region unhealthy", and the error
budgets on the dashboard (cdk/slo.py, cdk/constructs/slo.py, cdk/constructs/log_queries.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from cdk.slo import BURN_WINDOWS, SLOS, AvailabilitySlo, BurnWindow, LatencySlo
from grpc_edge.metrics import FAULT_CODES
from reportgrid import resources as r
from reportgrid.cli.log_queries import QUERY_NAME_PREFIX, SAVED_QUERIES
from reportgrid.cli.trace import component_of_log_group
from tests.infra.conftest import Synthesized

# The log groups of the region's processes (cdk/constructs: "<Component>Logs").
SERVICE_LOG_GROUPS = (
    "EdgeLogs",
    "StreamWorkerLogs",
    "QueueWorkerLogs",
    "StandbyWorkerLogs",
    "StreamFailureDrainLogs",
    "TaskMirrorLogs",
)


def _alarm(template: Template, name: str) -> tuple[str, dict[str, Any]]:
    """The alarm whose logical id is Monitoring<name> plus CDK's 8-character hash."""
    (found,) = (
        (lid, resource["Properties"])
        for lid, resource in template.find_resources("AWS::CloudWatch::Alarm").items()
        if lid.startswith(f"Monitoring{name}") and len(lid) == len(f"Monitoring{name}") + 8
    )
    return found


def _composite(template: Template, name: str) -> tuple[str, dict[str, Any]]:
    (found,) = (
        (lid, resource["Properties"])
        for lid, resource in template.find_resources("AWS::CloudWatch::CompositeAlarm").items()
        if lid.startswith(f"Monitoring{name}") and len(lid) == len(f"Monitoring{name}") + 8
    )
    return found


def _log_group_ids(template: Template) -> dict[str, str]:
    return {
        lid: lid for lid in template.find_resources("AWS::Logs::LogGroup") if "FlowLogs" not in lid
    }


def test_every_saved_query_covers_every_process_log_group(eu: Template) -> None:
    definitions = {
        d["Properties"]["Name"]: d["Properties"]
        for d in eu.find_resources("AWS::Logs::QueryDefinition").values()
    }
    assert set(definitions) == {QUERY_NAME_PREFIX + name for name in SAVED_QUERIES}
    groups = _log_group_ids(eu)
    for component in SERVICE_LOG_GROUPS:
        assert any(lid.startswith(component) for lid in groups), component
    for name, query in SAVED_QUERIES.items():
        saved = definitions[QUERY_NAME_PREFIX + name]
        assert saved["QueryString"] == query, name
        refs = {ref["Ref"] for ref in saved["LogGroupNames"]}
        assert refs == set(groups), name  # every process's group, no VPC flow logs


def test_reportgrid_trace_names_the_component_of_every_log_group(eu: Template) -> None:
    # A log group the trace does not know shows its raw name as the step's component: a
    # new function's group must get a name in reportgrid/cli/trace.py.
    unnamed = [lid for lid in _log_group_ids(eu) if component_of_log_group(lid) == lid]
    assert not unnamed, unnamed


def test_the_saved_queries_answer_the_investigation() -> None:
    assert 'filter @message like "rpt_REPLACEME"' in SAVED_QUERIES["report-life"]
    assert "stats count(*) as errors by" in SAVED_QUERIES["errors-by-code"]
    assert "sort time_to_terminal_ms desc" in SAVED_QUERIES["slowest-reports"]
    assert 'filter tenant = "REPLACE_TENANT"' in SAVED_QUERIES["tenant-activity"]
    assert "taking over report" in SAVED_QUERIES["takeovers"]


def test_the_availability_slos_count_what_request_faults_counts() -> None:
    assert r.REQUEST_FAULT_CODES == FAULT_CODES


def _metrics_by_id(properties: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["Id"]: m for m in properties["Metrics"]}


def _stat(query: dict[str, Any]) -> tuple[str, str, dict[str, str], int]:
    stat = query["MetricStat"]
    metric = stat["Metric"]
    dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
    return metric["MetricName"], stat["Stat"], dims, stat["Period"]


PAIRS = [(slo, window) for slo in SLOS for window in BURN_WINDOWS]


@pytest.mark.parametrize(("slo", "window"), PAIRS, ids=lambda v: getattr(v, "name", ""))
def test_each_burn_window_alarm_is_metric_math_over_its_window(
    eu: Template, slo: AvailabilitySlo | LatencySlo, window: BurnWindow
) -> None:
    for leg, length in (("Long", window.long), ("Short", window.short)):
        _, alarm = _alarm(eu, f"Slo{slo.name}{window.name}Burn{leg}")
        seconds = int(length.total_seconds())
        # A sliding window of one period: the period is the window.
        assert (alarm["EvaluationPeriods"], alarm["Threshold"]) == (1, window.factor)
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert "AlarmActions" not in alarm  # the pair pages, not each leg
        queries = _metrics_by_id(alarm)
        (expression,) = (q["Expression"] for q in queries.values() if "Expression" in q)
        # Burn rate = error ratio / error budget.
        assert expression.endswith(f") / {1 - slo.target:.6g}"), expression
        assert f"IF(total >= {slo.min_events}," in expression
        stats = {qid: _stat(q) for qid, q in queries.items() if "MetricStat" in q}
        assert {period for *_, period in stats.values()} == {seconds}
        if isinstance(slo, AvailabilitySlo):
            edge = {r.METRIC_SERVICE_DIMENSION: r.SERVICE_EDGE, "Method": slo.method}
            assert stats["total"][:3] == (r.METRIC.REQUESTS, "Sum", edge)
            faults = {dims.get("Code") for qid, (_, _, dims, _) in stats.items() if qid != "total"}
            assert faults == set(r.REQUEST_FAULT_CODES)
            for qid in stats.keys() - {"total"}:
                assert f"FILL({qid}, 0)" in expression
        else:
            worker = {r.METRIC_SERVICE_DIMENSION: slo.service}
            assert stats["total"][:3] == (r.METRIC.TIME_TO_TERMINAL, "SampleCount", worker)
            assert stats["good"][:3] == (
                r.METRIC.TIME_TO_TERMINAL,
                f"TC(:{slo.threshold_ms})",
                worker,
            )
            assert "(total - FILL(good, 0)) / total" in expression


def _rule(properties: dict[str, Any]) -> str:
    return json.dumps(properties["AlarmRule"])


def _topic(template: Template) -> str:
    (topic,) = template.find_resources("AWS::SNS::Topic")
    return topic


@pytest.mark.parametrize(("slo", "window"), PAIRS, ids=lambda v: getattr(v, "name", ""))
def test_each_pair_pages_when_both_windows_burn(
    eu: Template, slo: AvailabilitySlo | LatencySlo, window: BurnWindow
) -> None:
    pair = f"Slo{slo.name}{window.name}Burn"
    _, composite = _composite(eu, pair)
    long_id, _ = _alarm(eu, pair + "Long")
    short_id, _ = _alarm(eu, pair + "Short")
    rule = _rule(composite)
    assert ") AND ALARM(" in rule
    assert " OR " not in rule
    assert long_id in rule
    assert short_id in rule
    assert composite["AlarmActions"] == [{"Ref": _topic(eu)}]
    # Named, as "region unhealthy" is, so the pipeline's bake step can read it.
    assert composite["AlarmName"] == f"reportgrid-eu-west-1-{pair}"


def test_fast_burns_make_the_region_unhealthy_and_slow_burns_only_page(eu: Template) -> None:
    _, unhealthy = _composite(eu, "RegionUnhealthy")
    rule = _rule(unhealthy)
    for slo in SLOS:
        for window in BURN_WINDOWS:
            pair_id, _ = _composite(eu, f"Slo{slo.name}{window.name}Burn")
            assert (pair_id in rule) is window.region_unhealthy, pair_id
    # The static causes stay.
    assert "MonitoringEdgeFaults" in rule


def test_the_workbook_windows_and_rates() -> None:
    assert [(w.long.total_seconds(), w.short.total_seconds(), w.factor) for w in BURN_WINDOWS] == [
        (3600, 300, 14.4),
        (21600, 1800, 6.0),
    ]
    # 14.4x for an hour and 6x for six hours spend 2 % and 5 % of a 30-day budget.
    assert [round(w.budget_spent, 4) for w in BURN_WINDOWS] == [0.02, 0.05]


def test_the_dashboard_shows_each_slos_burn_and_remaining_budget(eu: Template) -> None:
    (dashboard,) = eu.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for slo in SLOS:
        assert f"SLO {slo.name}: burn rate" in body
        assert f"SLO {slo.name}: error budget left, 30 days" in body
    assert r.METRIC.TIME_TO_TERMINAL in body
    assert "-P30D" in body


def test_the_global_dashboard_shows_each_regions_budget(synth: Synthesized) -> None:
    (dashboard,) = synth.global_.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for slo in SLOS:
        assert f"SLO {slo.name}: error budget left, 30 days" in body
    for region in synth.config.regions:
        # One budget expression per SLO, run in the region its metrics are in.
        expressions = body.count(f'\\"label\\":\\"{region}\\",\\"expression\\":\\"100 * (1 - ')
        assert expressions == len(SLOS), region
