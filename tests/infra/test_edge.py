"""Edge service: GRPC target group behind an internal HTTPS ALB, scaling, safe deploys, WAF."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template

from cdk.constructs.edge_service import (
    ALB_FLIP_SECONDS,
    EDGE_FLIP_SECONDS,
    FAILOVER_WINDOW_SECONDS,
    HEALTH_CHECK_PATH,
    STOP_TIMEOUT_SECONDS,
)
from cdk.constructs.web_acl import RATE_RULE_NAME
from reportgrid import resources as r
from tests.infra.conftest import Synthesized


def test_target_group_speaks_grpc_with_health_code_zero(eu: Template) -> None:
    # The issue names /grpc.health.v1.Health/Check. That method answers gRPC status OK even
    # when its payload says NOT_SERVING, and the ALB judges only the status code, so with it
    # an edge whose dependencies are down would stay in service. The edge's readiness method
    # answers OK only while SERVING (UNAVAILABLE otherwise): with it, "health check with
    # success code 0" means what the issue wants, a NOT_SERVING edge is taken out.
    assert HEALTH_CHECK_PATH == r.EDGE_READINESS_PATH
    assert not HEALTH_CHECK_PATH.startswith("/grpc.health.v1.Health/")
    eu.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "Protocol": "HTTP",
            "ProtocolVersion": "GRPC",
            "Port": r.EDGE_PORT,
            "TargetType": "ip",
            "HealthCheckPath": r.EDGE_READINESS_PATH,
            "Matcher": {"GrpcCode": "0"},
            "HealthCheckIntervalSeconds": 10,
            "HealthCheckTimeoutSeconds": 5,
            "HealthyThresholdCount": 2,
            "UnhealthyThresholdCount": 2,
        },
    )


def test_failover_window_fits_the_documented_30_seconds(eu: Template) -> None:
    (group,) = eu.find_resources("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    props = group["Properties"]
    # The edge flips to NOT_SERVING after its failed probes, then the ALB needs its
    # unhealthy threshold of failed checks; GA follows the ALB's target health.
    edge_flip = r.EDGE_HEALTH_FAIL_AFTER * r.EDGE_HEALTH_INTERVAL_SECONDS
    alb_flip = props["UnhealthyThresholdCount"] * props["HealthCheckIntervalSeconds"]
    assert (edge_flip, alb_flip) == (EDGE_FLIP_SECONDS, ALB_FLIP_SECONDS) == (6, 20)
    assert edge_flip + alb_flip < FAILOVER_WINDOW_SECONDS == 30
    # A check that cannot answer within its timeout counts as failed before the next one.
    assert props["HealthCheckTimeoutSeconds"] < props["HealthCheckIntervalSeconds"]


def test_target_group_balances_least_outstanding_and_drains_past_the_edge_grace(
    eu: Template,
) -> None:
    assert r.ALB_DEREGISTRATION_DELAY_SECONDS > r.EDGE_DRAIN_GRACE_SECONDS
    eu.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "TargetGroupAttributes": Match.array_with(
                [
                    {
                        "Key": "deregistration_delay.timeout_seconds",
                        "Value": str(r.ALB_DEREGISTRATION_DELAY_SECONDS),
                    },
                    {
                        "Key": "load_balancing.algorithm.type",
                        "Value": "least_outstanding_requests",
                    },
                ]
            )
        },
    )


def test_alb_is_internal_with_access_logs_and_an_https_listener(eu: Template) -> None:
    for attribute in ("access_logs.s3.enabled", "routing.http2.enabled"):
        eu.has_resource_properties(
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            {
                "Scheme": "internal",
                "LoadBalancerAttributes": Match.array_with([{"Key": attribute, "Value": "true"}]),
            },
        )
    eu.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": 443,
            "Protocol": "HTTPS",
            "Certificates": [{"CertificateArn": Match.string_like_regexp(":acm:eu-west-1:")}],
        },
    )


def test_edge_container_runs_the_edge_with_its_secrets_and_drain_time(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Command": ["python", "-m", "grpc_edge"],
                        "PortMappings": [Match.object_like({"ContainerPort": r.EDGE_PORT})],
                        "StopTimeout": STOP_TIMEOUT_SECONDS,
                    }
                )
            ]
        },
    )
    (edge,) = (
        c
        for task in eu.find_resources("AWS::ECS::TaskDefinition").values()
        for c in task["Properties"]["ContainerDefinitions"]
        if c.get("Command") == ["python", "-m", "grpc_edge"]
    )
    environment = {e["Name"]: e["Value"] for e in edge["Environment"]}
    assert environment[r.ENV.EDGE_PORT] == str(r.EDGE_PORT)
    assert environment[r.ENV.SERVICE_NAME] == r.SERVICE_EDGE
    assert environment[r.ENV.REGION] == "eu-west-1"
    assert environment[r.ENV.PEER_REGION] == "us-east-1"
    # Presigned result URLs: their lifetime, read by settings (and validated there). The
    # edge's s3:GetObject* on the results bucket (test_component_grants) signs them, and
    # the bucket is SSE-S3 (test_storage_and_cache), so no KMS grant is needed.
    assert environment[r.ENV.DOWNLOAD_URI_SECONDS] == str(r.EDGE_DOWNLOAD_URI_SECONDS)
    # Secrets come from Secrets Manager, never as plain environment values.
    secrets = {s["Name"]: s["ValueFrom"] for s in edge["Secrets"]}
    assert set(secrets) == {r.ENV.ID_SECRETS, r.ENV.REDIS_URL}
    assert r.ID_SECRETS_SECRET_NAME in str(secrets[r.ENV.ID_SECRETS])
    assert r.ENV.ID_SECRETS not in environment
    assert STOP_TIMEOUT_SECONDS > r.EDGE_DRAIN_GRACE_SECONDS


def test_edge_service_rolls_back_failed_deployments(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::ECS::Service",
        {
            "DeploymentConfiguration": Match.object_like(
                {"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}}
            ),
            "LoadBalancers": [Match.object_like({"ContainerPort": r.EDGE_PORT})],
        },
    )


def test_cluster_has_container_insights(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enhanced"}]},
    )


def test_edge_scales_on_cpu_and_request_count_per_target(synth: Synthesized) -> None:
    template = synth.regional("eu-west-1")
    capacity = synth.config.capacity
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": capacity.edge_min_tasks,
            "MaxCapacity": capacity.edge_max_tasks,
            "ScalableDimension": "ecs:service:DesiredCount",
        },
    )
    for metric_type, target in (
        ("ECSServiceAverageCPUUtilization", capacity.edge_cpu_target_percent),
        ("ALBRequestCountPerTarget", capacity.edge_requests_per_target_per_minute),
    ):
        template.has_resource_properties(
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            {
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                    {
                        "PredefinedMetricSpecification": Match.object_like(
                            {"PredefinedMetricType": metric_type}
                        ),
                        "TargetValue": target,
                    }
                ),
            },
        )


def test_waf_rate_limits_per_ip_and_is_attached_to_the_alb(synth: Synthesized) -> None:
    template = synth.regional("eu-west-1")
    template.has_resource_properties(
        "AWS::WAFv2::WebACL",
        {
            "Scope": "REGIONAL",
            "Rules": Match.array_with(
                [
                    Match.object_like(
                        {
                            "Name": RATE_RULE_NAME,
                            "Action": {"Block": {}},
                            "Statement": {
                                "RateBasedStatement": Match.object_like(
                                    {
                                        "AggregateKeyType": "IP",
                                        "Limit": synth.config.capacity.waf_requests_per_ip_per_5min,
                                    }
                                )
                            },
                        }
                    )
                ]
            ),
        },
    )
    (alb_id,) = template.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    template.has_resource_properties(
        "AWS::WAFv2::WebACLAssociation", {"ResourceArn": {"Ref": alb_id}}
    )
