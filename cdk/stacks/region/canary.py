"""The synthetic canary (with the pipeline): a client of this region, probing it every
minute through the region's own listener, the one Global Accelerator sends this region's
share of traffic to. Through the accelerator's address the probe would go wherever GA
sends it, and pass while this region is down; through the listener it fails exactly when
this region cannot run a report from submit to result. It calls the listener by its
load balancer's name and checks the certificate as the service's domain.

Its alarm pages and the pipeline's bake step reads it; it is no cause of the composite
"region unhealthy" (a canary without its key fails too, and that is no reason to move
traffic)."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.canary_key import CANARY_KEY_SECRET_NAME
from cdk.constructs.canary_function import (
    LATENCY_METRIC,
    SERVICE,
    SUCCESS_METRIC,
    CanaryFunction,
)
from cdk.constructs.edge_service import LISTENER_PORT
from cdk.constructs.monitoring import AlarmSpec, Signals, custom_metric
from cdk.stacks.region.edge import Edge
from cdk.stacks.region.storage import RegionalStorage

# Three minutes without a successful probe (a failed one, or none at all) page.
FAILING_MINUTES = 3


class SyntheticCanary:
    """Exposes `function` and its `signals`."""

    def __init__(
        self,
        scope: Construct,
        *,
        edge: Edge,
        storage: RegionalStorage,
        vpc: ec2.IVpc,
        code: lambda_.Code,
        domain_name: str,
    ) -> None:
        # Created by the data stack, replicated here under one name (cdk/canary_key.py).
        api_key = secretsmanager.Secret.from_secret_name_v2(
            scope, "CanaryApiKey", CANARY_KEY_SECRET_NAME
        )
        self.function = CanaryFunction(
            scope,
            "Canary",
            code=code,
            vpc=vpc,
            endpoint=f"{edge.load_balancer.load_balancer_dns_name}:{LISTENER_PORT}",
            tls_name=domain_name,
            api_key=api_key,
            environment=storage.lambda_environment,
        ).function
        self.signals = self._signals()

    def _signals(self) -> Signals:
        success = custom_metric(SUCCESS_METRIC, SERVICE)
        return Signals(
            alarms=[
                AlarmSpec(
                    "CanaryFailing",
                    success,
                    1,
                    FAILING_MINUTES,
                    f"the synthetic canary has not completed a report for {FAILING_MINUTES} "
                    "minutes (submit, watch, get through this region's listener)",
                    too_few=True,
                )
            ],
            rows=[
                [
                    cw.GraphWidget(
                        title="Synthetic canary (successes a minute; latency ms)",
                        left=[success],
                        right=[
                            custom_metric(LATENCY_METRIC, SERVICE, statistic="p50"),
                            custom_metric(LATENCY_METRIC, SERVICE, statistic="Maximum"),
                        ],
                        width=24,
                    )
                ]
            ],
        )
