"""The global stack (named global_stack: `global` is a Python keyword), in Global
Accelerator's home region: the accelerator, its endpoint groups, the DNS name and the
cross-region dashboard. Deployed last: it reads each region's ALB ARN (CDK cross-region
references)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from constructs import Construct

from cdk.config import DeployConfig
from cdk.constructs.accelerator import Accelerator
from cdk.constructs.global_dashboard import GlobalDashboard


class GlobalStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DeployConfig,
        load_balancers: Mapping[str, elbv2.IApplicationLoadBalancer],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.accelerator = Accelerator(
            self,
            "Accelerator",
            load_balancers=load_balancers,
            traffic_dials={region: config.traffic_dial(region) for region in config.regions},
        )
        accelerator = self.accelerator.accelerator
        GlobalDashboard(
            self,
            "Dashboard",
            regions=config.regions,
            accelerator_arn=accelerator.accelerator_arn,
            home_region=config.global_region,
        )
        if config.hosted_zone_id is not None and config.domain_name is not None:
            zone = route53.HostedZone.from_hosted_zone_attributes(
                self,
                "Zone",
                hosted_zone_id=config.hosted_zone_id,
                zone_name=config.hosted_zone_name or "",
            )
            route53.ARecord(
                self,
                "Alias",
                zone=zone,
                record_name=config.domain_name,
                target=route53.RecordTarget.from_alias(
                    targets.GlobalAcceleratorTarget(accelerator)
                ),
            )
        CfnOutput(self, "AcceleratorDnsName", value=accelerator.dns_name)
