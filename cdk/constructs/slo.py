"""The region's SLOs (cdk/slo.py) as CloudWatch metric math: per SLO and burn window two
window alarms on the burn rate, combined by an AND composite that pages; the fast-burn
composites are causes of the region's "unhealthy" composite. Dashboard widgets show each
SLO's burn rate and its remaining error budget over the budget period.

A burn-rate alarm's period is its window, one evaluation period: CloudWatch evaluates a
metric alarm over Period x EvaluationPeriods with a sliding window by default (advancing
each evaluation, not aligned to the clock; docs.aws.amazon.com/AmazonCloudWatch/latest/
monitoring/alarm-evaluation-window.html), so a 1 h period is the last hour, every minute.
No traffic is no burn: missing data does not breach."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from constructs import Construct

from cdk.slo import BUDGET_PERIOD, BURN_WINDOWS, SLOS, AvailabilitySlo, BurnWindow, LatencySlo
from reportgrid import resources as r

Slo = AvailabilitySlo | LatencySlo


def _duration(value: timedelta) -> Duration:
    return Duration.seconds(int(value.total_seconds()))


def _edge_requests(method: str, period: Duration, code: str | None = None) -> cw.Metric:
    """The edge's Requests count of one method (and status): the {service, Method} and
    {service, Method, Code} dimension sets grpc_edge/metrics.py declares."""
    dimensions = {r.METRIC_SERVICE_DIMENSION: r.SERVICE_EDGE, "Method": method}
    if code is not None:
        dimensions["Code"] = code
    return cw.Metric(
        namespace=r.METRICS_NAMESPACE,
        metric_name=r.METRIC.REQUESTS,
        dimensions_map=dimensions,
        statistic="Sum",
        period=period,
    )


def error_ratio(slo: Slo, period: Duration, tag: str = "") -> tuple[str, dict[str, cw.IMetric]]:
    """The SLO's bad/total over `period` as (expression, its metrics); no value (not 0)
    when nothing was counted, and 0 below the SLO's minimum of events. `tag` suffixes the
    metric ids, which must be unique in one graph."""
    total, good = f"total{tag}", f"good{tag}"
    if isinstance(slo, AvailabilitySlo):
        codes = sorted(r.REQUEST_FAULT_CODES)
        using: dict[str, cw.IMetric] = {total: _edge_requests(slo.method, period)}
        faults = {f"f{i}{tag}": code for i, code in enumerate(codes)}
        using |= {id_: _edge_requests(slo.method, period, code) for id_, code in faults.items()}
        # A code that never occurred has no data point: FILL makes it 0, not a gap.
        bad = " + ".join(f"FILL({id_}, 0)" for id_ in faults)
        return f"IF({total} >= {slo.min_events}, ({bad}) / {total}, 0)", using
    # Trimmed count TC(:T) = the values <= T (CloudWatch statistics definitions: TC with
    # absolute bounds; EMF values arrays are raw values, so percentile-type statistics
    # apply: docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
    # Statistics-definitions.html).
    using = {
        total: cw.Metric(
            namespace=r.METRICS_NAMESPACE,
            metric_name=r.METRIC.TIME_TO_TERMINAL,
            dimensions_map={r.METRIC_SERVICE_DIMENSION: slo.service},
            statistic="SampleCount",
            period=period,
        ),
        good: cw.Metric(
            namespace=r.METRICS_NAMESPACE,
            metric_name=r.METRIC.TIME_TO_TERMINAL,
            dimensions_map={r.METRIC_SERVICE_DIMENSION: slo.service},
            statistic=f"TC(:{slo.threshold_ms})",
            period=period,
        ),
    }
    return f"IF({total} >= {slo.min_events}, ({total} - FILL({good}, 0)) / {total}, 0)", using


def burn_rate(slo: Slo, window: timedelta, label: str, tag: str = "") -> cw.MathExpression:
    """How many times the budget rate the SLO's errors run at over `window`."""
    period = _duration(window)
    ratio, using = error_ratio(slo, period, tag)
    return cw.MathExpression(
        expression=f"({ratio}) / {slo.budget:.6g}",
        using_metrics=using,
        label=label,
        period=period,
    )


def remaining_budget(slo: Slo, region: str | None = None, tag: str = "") -> cw.MathExpression:
    """The share (%) of the budget period's error budget left; negative once overspent.
    `region`: of another region's metrics (the global dashboard)."""
    period = _duration(BUDGET_PERIOD)
    ratio, using = error_ratio(slo, period, tag)
    if region is not None:
        using = {id_: _in_region(metric, region) for id_, metric in using.items()}
    return cw.MathExpression(
        expression=f"100 * (1 - ({ratio}) / {slo.budget:.6g})",
        using_metrics=using,
        label=region or f"{slo.name} budget left (%)",
        period=period,
        # The expression runs where its metrics are (a dashboard's widget may be elsewhere).
        search_region=region,
    )


def _in_region(metric: cw.IMetric, region: str) -> cw.IMetric:
    assert isinstance(metric, cw.Metric)  # error_ratio builds plain metrics
    return metric.with_(region=region)


class RegionSlos(Construct):
    """`alarm_name` gives an alarm its deployed name: always a pair's, a window alarm's
    only with `named_alarms` (else CloudFormation's). Exposes `window_alarms` (name ->
    alarm), `pairs` (name -> AND composite, each paging `action`), `pair_names` (name ->
    deployed name), `region_unhealthy` (the pairs that are causes of the region's composite) and
    `rows` (dashboard rows)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        region: str,
        action: cw_actions.SnsAction,
        alarm_name: Callable[[str], str],
        named_alarms: bool,
        slos: Sequence[Slo] = SLOS,
        windows: Sequence[BurnWindow] = BURN_WINDOWS,
    ) -> None:
        super().__init__(scope, id_)
        self.window_alarms: dict[str, cw.Alarm] = {}
        self.pairs: dict[str, cw.CompositeAlarm] = {}
        self.pair_names: dict[str, str] = {}
        self.region_unhealthy: list[cw.CompositeAlarm] = []

        for slo in slos:
            for window in windows:
                pair_name = f"{slo.name}{window.name}Burn"
                self.pair_names[pair_name] = alarm_name(f"Slo{pair_name}")
                legs = []
                for leg, length in (("Long", window.long), ("Short", window.short)):
                    name = f"{pair_name}{leg}"
                    self.window_alarms[name] = alarm = cw.Alarm(
                        self,
                        name,
                        alarm_name=alarm_name(f"Slo{name}") if named_alarms else None,
                        alarm_description=(
                            f"Reportgrid {region}: {slo.what} (target {slo.target:.3%}) "
                            f"burning the error budget over {window.factor}x over "
                            f"{_text(length)} (no action: the pair composite pages)"
                        ),
                        metric=burn_rate(slo, length, f"{slo.name} burn rate {_text(length)}"),
                        threshold=window.factor,
                        evaluation_periods=1,
                        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                    )
                    legs.append(cw.AlarmRule.from_alarm(alarm, cw.AlarmState.ALARM))
                self.pairs[pair_name] = pair = cw.CompositeAlarm(
                    self,
                    pair_name,
                    # Always named, as "region unhealthy" is: the pipeline bakes on it by name.
                    composite_alarm_name=self.pair_names[pair_name],
                    alarm_description=(
                        f"Reportgrid {region}: {slo.what} burning the error budget at over "
                        f"{window.factor}x for {_text(window.long)} and still in the last "
                        f"{_text(window.short)} ({window.budget_spent:.0%} of the "
                        f"{BUDGET_PERIOD.days}-day budget per {_text(window.long)})."
                    ),
                    alarm_rule=cw.AlarmRule.all_of(*legs),
                )
                pair.add_alarm_action(action)
                if window.region_unhealthy:
                    self.region_unhealthy.append(pair)
        self.rows: list[list[cw.IWidget]] = [
            [
                cw.GraphWidget(
                    title=f"SLO {slo.name}: burn rate (x budget rate)",
                    left=[
                        burn_rate(slo, length, _text(length), tag=f"w{i}")
                        for i, length in enumerate(
                            length for w in windows for length in (w.long, w.short)
                        )
                    ],
                    left_annotations=[
                        cw.HorizontalAnnotation(value=w.factor, label=f"{w.name} {w.factor}x")
                        for w in windows
                    ],
                    width=24 // len(slos) if len(slos) <= 3 else 8,
                )
                for slo in slos
            ],
            [
                cw.SingleValueWidget(
                    title=f"SLO {slo.name}: error budget left, {BUDGET_PERIOD.days} days (%)",
                    metrics=[remaining_budget(slo)],
                    start=f"-P{BUDGET_PERIOD.days}D",
                    set_period_to_time_range=True,
                    width=24 // len(slos) if len(slos) <= 3 else 8,
                )
                for slo in slos
            ],
        ]


def _text(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
