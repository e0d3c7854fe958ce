"""Network: 3 AZs, private workloads, endpoints for every AWS API on the hot path, flow logs."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match, Template

from cdk.constructs.network import VPC_CIDR
from tests.infra.conftest import Synthesized


def test_vpc_spans_three_named_azs_without_lookups(synth: Synthesized) -> None:
    template = synth.regional("us-east-1")
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": VPC_CIDR})
    zones = {
        props["Properties"]["AvailabilityZone"]
        for props in template.find_resources("AWS::EC2::Subnet").values()
    }
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}
    # No context lookup was needed (a lookup shows up as "missing" in the manifest).
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    assert "missing" not in manifest, manifest.get("missing")


def test_gateway_endpoints_for_dynamodb_and_s3(eu: Template) -> None:
    for service in ("dynamodb", "s3"):
        eu.has_resource_properties(
            "AWS::EC2::VPCEndpoint",
            {
                "VpcEndpointType": "Gateway",
                "ServiceName": Match.object_like(
                    {"Fn::Join": ["", Match.array_with([f".{service}"])]}
                ),
            },
        )


def test_interface_endpoints_for_each_api(eu: Template) -> None:
    services = {
        props["Properties"]["ServiceName"]
        for props in eu.find_resources(
            "AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Interface"}}
        ).values()
    }
    expected = {
        f"com.amazonaws.eu-west-1.{name}"
        for name in ("kinesis-streams", "sqs", "ecr.api", "ecr.dkr", "logs", "secretsmanager")
    }
    assert expected <= services, expected - services
    eu.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {"VpcEndpointType": "Interface", "PrivateDnsEnabled": True},
    )


def test_endpoint_security_group_admits_https_from_the_vpc_only(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": Match.string_like_regexp("interface endpoints"),
            "SecurityGroupIngress": [
                Match.object_like({"CidrIp": VPC_CIDR, "FromPort": 443, "ToPort": 443})
            ],
        },
    )


def test_flow_logs_capture_all_traffic(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
