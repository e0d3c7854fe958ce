"""One dashboard across regions: traffic and health side by side, and GA's own flows."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Fn
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from cdk.constructs.monitoring import custom_metric
from cdk.constructs.slo import remaining_budget
from cdk.slo import BUDGET_PERIOD, SLOS
from reportgrid import resources as r

ONE_MINUTE = Duration.minutes(1)


class GlobalDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        regions: Sequence[str],
        accelerator_arn: str,
        home_region: str,
    ) -> None:
        super().__init__(scope, id_)
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name="reportgrid-global")
        per_region = [
            ("Requests by region", r.METRIC.REQUESTS, "Sum"),
            ("p99 latency by region (ms)", r.METRIC.REQUEST_LATENCY, "p99"),
            ("Server faults by region", r.METRIC.REQUEST_FAULTS, "Sum"),
            ("Shed requests by region", r.METRIC.SHED_REQUESTS, "Sum"),
        ]
        self.dashboard.add_widgets(
            *(
                cw.GraphWidget(
                    title=title,
                    left=[
                        custom_metric(name, r.SERVICE_EDGE, statistic=stat, region=region).with_(
                            label=region
                        )
                        for region in regions
                    ],
                    width=6,
                )
                for title, name, stat in per_region
            )
        )
        # Each SLO's error budget left in each region (cdk/slo.py), side by side.
        self.dashboard.add_widgets(
            *(
                cw.SingleValueWidget(
                    title=f"SLO {slo.name}: error budget left, {BUDGET_PERIOD.days} days (%)",
                    metrics=[
                        remaining_budget(slo, region, tag=f"r{i}")
                        for i, region in enumerate(regions)
                    ],
                    start=f"-P{BUDGET_PERIOD.days}D",
                    set_period_to_time_range=True,
                    width=24 // len(SLOS),
                )
                for slo in SLOS
            )
        )
        # GA's metrics are keyed by the accelerator id (the ARN's part after "accelerator/")
        # and live in its home region.
        accelerator_id = Fn.select(1, Fn.split("/", accelerator_arn))
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Global Accelerator new flows",
                left=[
                    cw.Metric(
                        namespace="AWS/GlobalAccelerator",
                        metric_name="NewFlowCount",
                        dimensions_map={"Accelerator": accelerator_id},
                        statistic="Sum",
                        period=ONE_MINUTE,
                        region=home_region,
                    )
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Global Accelerator bytes in",
                left=[
                    cw.Metric(
                        namespace="AWS/GlobalAccelerator",
                        metric_name="ProcessedBytesIn",
                        dimensions_map={"Accelerator": accelerator_id},
                        statistic="Sum",
                        period=ONE_MINUTE,
                        region=home_region,
                    )
                ],
                width=12,
            ),
        )
