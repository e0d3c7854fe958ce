"""Global Accelerator: the one public entry point, anycast, in front of every region's ALB."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_globalaccelerator as ga
from aws_cdk import aws_globalaccelerator_endpoints as ga_endpoints
from constructs import Construct

LISTENER_PORT = 443
# For ALB endpoints GA follows the ALB's own target health (the edge's readiness check,
# cdk.constructs.edge_service): a region whose targets are all unhealthy loses its new
# connections within ~30 s of its dependencies failing (edge ~6 s + ALB ~20 s + GA). These
# two settings are the group's own health-check timing, used for its failover decisions.
HEALTH_CHECK_INTERVAL_SECONDS = 10
HEALTH_CHECK_THRESHOLD = 3


class Accelerator(Construct):
    """TCP 443 passes TLS through to each region's ALB (which terminates it). One endpoint
    group per region; GA sends a region's share by its traffic dial and moves it to the
    nearest healthy region when the ALB's targets fail their health checks."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        load_balancers: Mapping[str, elbv2.IApplicationLoadBalancer],
        traffic_dials: Mapping[str, int],
    ) -> None:
        super().__init__(scope, id_)
        self.accelerator = ga.Accelerator(self, "Accelerator", accelerator_name="reportgrid")
        self.listener = self.accelerator.add_listener(
            "Tls",
            port_ranges=[ga.PortRange(from_port=LISTENER_PORT, to_port=LISTENER_PORT)],
            protocol=ga.ConnectionProtocol.TCP,
            # A client's connections stay on one region: Watch and its follow-up calls meet
            # the same cache.
            client_affinity=ga.ClientAffinity.SOURCE_IP,
        )
        self.endpoint_groups: dict[str, ga.EndpointGroup] = {}
        for region, alb in load_balancers.items():
            self.endpoint_groups[region] = self.listener.add_endpoint_group(
                f"Group-{region}",
                region=region,
                traffic_dial_percentage=traffic_dials.get(region, 100),
                health_check_interval=Duration.seconds(HEALTH_CHECK_INTERVAL_SECONDS),
                health_check_threshold=HEALTH_CHECK_THRESHOLD,
                endpoints=[
                    ga_endpoints.ApplicationLoadBalancerEndpoint(alb, preserve_client_ip=True)
                ],
            )
