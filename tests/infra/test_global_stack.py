"""Global stack: Global Accelerator with a TCP 443 listener and one endpoint group per
region at that region's ALB, client IPs preserved, traffic dials from context."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.conftest import DIALS, GLOBAL_REGION, REGIONS, Synthesized


def test_accelerator_listens_on_tcp_443(synth: Synthesized) -> None:
    synth.global_.resource_count_is("AWS::GlobalAccelerator::Accelerator", 1)
    synth.global_.has_resource_properties(
        "AWS::GlobalAccelerator::Listener",
        {"Protocol": "TCP", "PortRanges": [{"FromPort": 443, "ToPort": 443}]},
    )


def test_one_endpoint_group_per_region_with_its_dial(synth: Synthesized) -> None:
    groups = synth.global_.find_resources("AWS::GlobalAccelerator::EndpointGroup")
    assert sorted(g["Properties"]["EndpointGroupRegion"] for g in groups.values()) == sorted(
        REGIONS
    )
    for region in REGIONS:
        synth.global_.has_resource_properties(
            "AWS::GlobalAccelerator::EndpointGroup",
            {
                "EndpointGroupRegion": region,
                "TrafficDialPercentage": DIALS[region],
                # Health-based failover timing (docs: new connections move in ~30 s).
                "HealthCheckIntervalSeconds": 10,
                "ThresholdCount": 3,
                "EndpointConfigurations": [
                    Match.object_like(
                        {"ClientIPPreservationEnabled": True, "EndpointId": Match.any_value()}
                    )
                ],
            },
        )


def test_endpoints_are_the_regional_albs(synth: Synthesized) -> None:
    # The ALB ARN crosses regions through CDK's cross-region references (SSM-backed).
    groups = synth.global_.find_resources("AWS::GlobalAccelerator::EndpointGroup")
    for group in groups.values():
        region = group["Properties"]["EndpointGroupRegion"]
        (endpoint,) = group["Properties"]["EndpointConfigurations"]
        assert "ExportsReader" in str(endpoint["EndpointId"]), endpoint
        assert region.replace("-", "") in str(endpoint["EndpointId"]).replace("-", ""), region


def test_global_stack_deploys_last_in_gas_home_region(synth: Synthesized) -> None:
    stack = synth.deployment.global_
    assert stack.region == GLOBAL_REGION
    assert set(synth.deployment.regions.values()) <= set(stack.dependencies)
