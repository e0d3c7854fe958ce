"""The gRPC edge: a Fargate service behind an internal ALB with a GRPC target group.

Why an internal ALB: Global Accelerator is the only public entry point. GA reaches
internal ALBs directly (client IP preservation is then always on), so the ALB has no
public address to attack or to bypass GA's health-based failover and traffic dials with;
WAF still sees each client's IP. The VPC keeps an internet gateway, which GA requires.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.config import Capacity
from cdk.constructs.fargate_task import fargate_task
from cdk.constructs.nag import suppress
from reportgrid import resources as r

# The ALB's gRPC health check judges only the call's status code. The standard
# /grpc.health.v1.Health/Check answers status OK even when its payload says NOT_SERVING, so
# with that path a failing edge would stay "healthy". The edge's readiness method answers OK
# while it is SERVING and UNAVAILABLE otherwise: with success code 0 the ALB's verdict is the
# edge's own (grpc_edge/dependency_health.py).
HEALTH_CHECK_PATH = r.EDGE_READINESS_PATH
HEALTHY_GRPC_CODES = "0"
HEALTH_CHECK_INTERVAL_SECONDS = 10
HEALTH_CHECK_TIMEOUT_SECONDS = 5
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 2
# Failover window, worst case, for new connections when a region's dependencies fail:
#   the edge's probes flip it to NOT_SERVING after EDGE_HEALTH_FAIL_AFTER failed probes
#   EDGE_HEALTH_INTERVAL_SECONDS apart (~6 s); the ALB marks the target unhealthy after
#   UNHEALTHY_THRESHOLD failed checks HEALTH_CHECK_INTERVAL_SECONDS apart (~20 s); Global
#   Accelerator follows the ALB's target health and moves new connections to the next
#   region (~30 s in all). Connections already open stay until they close or fail.
EDGE_FLIP_SECONDS = r.EDGE_HEALTH_FAIL_AFTER * r.EDGE_HEALTH_INTERVAL_SECONDS
ALB_FLIP_SECONDS = UNHEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL_SECONDS
FAILOVER_WINDOW_SECONDS = 30
LISTENER_PORT = 443
# The whole argv: the image's ENTRYPOINT is empty and ECS appends Command to it.
EDGE_COMMAND = ["python", "-m", "grpc_edge"]
# After SIGTERM the edge drains for EDGE_DRAIN_GRACE_SECONDS; ECS waits a little longer
# before SIGKILL. The ALB has already stopped sending (deregistration delay comes first).
STOP_TIMEOUT_SECONDS = r.EDGE_DRAIN_GRACE_SECONDS + 10


class EdgeService(Construct):
    """Exposes `load_balancer`, `target_group`, `service` and `task_role` for the stack."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cluster: ecs.ICluster,
        image: ecs.ContainerImage,
        certificate: acm.ICertificate,
        environment: Mapping[str, str],
        secrets: Mapping[str, ecs.Secret],
        capacity: Capacity,
        access_logs: s3.IBucket,
    ) -> None:
        super().__init__(scope, id_)
        vpc = cluster.vpc
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        task, log_group = fargate_task(
            self, cpu=capacity.edge_cpu, memory_mib=capacity.edge_memory_mib
        )
        self.task_role = task.task_role
        self.execution_role = task.obtain_execution_role()
        self.container = task.add_container(
            "edge",
            image=image,
            command=EDGE_COMMAND,
            environment={
                **environment,
                r.ENV.EDGE_PORT: str(r.EDGE_PORT),
                r.ENV.EDGE_WORKERS: str(capacity.edge_workers),
                r.ENV.DOWNLOAD_URI_SECONDS: str(r.EDGE_DOWNLOAD_URI_SECONDS),
                r.ENV.SERVICE_NAME: r.SERVICE_EDGE,
            },
            secrets=dict(secrets),
            port_mappings=[ecs.PortMapping(container_port=r.EDGE_PORT, name="grpc")],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="edge", log_group=log_group),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task,
            desired_count=capacity.edge_min_tasks,
            vpc_subnets=private,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
            health_check_grace_period=Duration.seconds(30),
        )

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=False,
            vpc_subnets=private,
            http2_enabled=True,
            drop_invalid_header_fields=True,
            # gRPC streams (WatchReport, DownloadReport) stay open; 15 min between frames.
            idle_timeout=Duration.minutes(15),
        )
        self.load_balancer.log_access_logs(access_logs, prefix="alb")
        # With client IP preservation the packets arrive from the clients' own addresses,
        # so 443 is open to any source; the ALB is internal and reachable only through GA.
        self.load_balancer.connections.allow_from_any_ipv4(ec2.Port.tcp(LISTENER_PORT))
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=vpc,
            port=r.EDGE_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            protocol_version=elbv2.ApplicationProtocolVersion.GRPC,
            target_type=elbv2.TargetType.IP,
            load_balancing_algorithm_type=elbv2.TargetGroupLoadBalancingAlgorithmType.LEAST_OUTSTANDING_REQUESTS,
            deregistration_delay=Duration.seconds(r.ALB_DEREGISTRATION_DELAY_SECONDS),
            health_check=elbv2.HealthCheck(
                path=HEALTH_CHECK_PATH,
                healthy_grpc_codes=HEALTHY_GRPC_CODES,
                interval=Duration.seconds(HEALTH_CHECK_INTERVAL_SECONDS),
                timeout=Duration.seconds(HEALTH_CHECK_TIMEOUT_SECONDS),
                healthy_threshold_count=HEALTHY_THRESHOLD,
                unhealthy_threshold_count=UNHEALTHY_THRESHOLD,
            ),
            targets=[self.service],
        )
        self.listener = self.load_balancer.add_listener(
            "Https",
            port=LISTENER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_target_groups=[self.target_group],
            open=False,
        )

        scaling = self.service.auto_scale_task_count(
            min_capacity=capacity.edge_min_tasks, max_capacity=capacity.edge_max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=capacity.edge_cpu_target_percent,
            scale_out_cooldown=Duration.seconds(60),
            scale_in_cooldown=Duration.seconds(300),
        )
        scaling.scale_on_request_count(
            "Requests",
            requests_per_target=capacity.edge_requests_per_target_per_minute,
            target_group=self.target_group,
            scale_out_cooldown=Duration.seconds(60),
            scale_in_cooldown=Duration.seconds(300),
        )

        suppress(
            self.load_balancer,
            "AwsSolutions-EC23",
            "Internal ALB reached only through Global Accelerator with client IP "
            "preservation: packets carry the clients' own addresses, so 443 must admit any "
            "IPv4 source. WAF rate-limits per client IP.",
        )
        suppress(
            task,
            "AwsSolutions-ECS2",
            "The environment holds resource names, URLs and sizes only; the id secrets and "
            "the Valkey URL come from Secrets Manager as ECS secrets.",
        )
