"""A queue worker: a Fargate service on one SQS queue, scaled on the backlog per running
task. The region runs two: the heavy-report worker on the heavy queue, and the standby
worker on the standby queue (tasks mirrored from the peer region; it also writes the
region's heartbeat, so its minimum is at least one task).

Container health: the image's HEALTHCHECK probes the edge's gRPC health, which a worker
does not serve. ECS runs only the health checks a container definition names and ignores
the image's (ECS API HealthCheck: it "does not monitor Docker health checks that are
embedded in a container image"), so the worker containers name none: a worker is healthy
while its process runs (it exits non-zero on a fatal error and ECS replaces the task).

Commands are the whole argv: the image has an empty ENTRYPOINT, and ECS passes Command as
the container's Cmd, which Docker appends to the ENTRYPOINT (tests/infra/test_containers.py
joins the two as ECS does)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.config import Capacity
from cdk.constructs.fargate_task import fargate_task
from cdk.constructs.nag import suppress
from cdk.constructs.python_function import worker_size_environment
from reportgrid import resources as r

WORKER_COMMAND = ("python", "-m", "functions.queue_worker")
STANDBY_COMMAND = ("python", "-m", "functions.standby")
# Powertools/log service name of the standby worker (the queue worker's is in resources).
STANDBY_SERVICE = "reportgrid-standby-worker"
# On SIGTERM the worker stops taking work and finishes or releases what it holds; Fargate's
# longest stop timeout gives it two minutes before SIGKILL.
STOP_TIMEOUT_SECONDS = 120
BACKLOG_POLICY_NAME = "backlog-per-task"
# The X-Ray daemon sidecar (docs/OBSERVABILITY.md, "Traces through the queue"): AWS's image
# on public ECR, the 3.x line.
XRAY_DAEMON_CONTAINER = "xray-daemon"
XRAY_DAEMON_IMAGE = "public.ecr.aws/xray/aws-xray-daemon:3.x"
XRAY_DAEMON_ADDRESS_ENV = r.ENV.XRAY_DAEMON_ADDRESS
XRAY_DAEMON_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
# Fargate platform 1.4+ gives every task 20 GiB of ephemeral storage unless the task
# definition asks for more (ECS docs, "Fargate task ephemeral storage").
FARGATE_EPHEMERAL_STORAGE_MIB = 20 * 1024


class QueueWorker(Construct):
    """Exposes `service` and `task_role` for the stack's grants."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cluster: ecs.ICluster,
        image: ecs.ContainerImage,
        queue: sqs.IQueue,
        environment: Mapping[str, str],
        secrets: Mapping[str, ecs.Secret],
        capacity: Capacity,
        command: Sequence[str] = WORKER_COMMAND,
        service_name: str = r.SERVICE_QUEUE_WORKER,
        container_name: str = "worker",
        min_tasks: int | None = None,
        max_tasks: int | None = None,
    ) -> None:
        super().__init__(scope, id_)
        task, log_group = fargate_task(
            self, cpu=capacity.worker_cpu, memory_mib=capacity.worker_memory_mib
        )
        self.task_role = task.task_role
        self.execution_role = task.obtain_execution_role()
        min_tasks = capacity.worker_min_tasks if min_tasks is None else min_tasks
        max_tasks = capacity.worker_max_tasks if max_tasks is None else max_tasks
        if not 1 <= min_tasks <= max_tasks:
            # Backlog per task divides by the running task count; the standby is the
            # region's heartbeat. (cdk.config checks the context; this guards callers.)
            raise ValueError(f"{id_}: need 1 <= min_tasks ({min_tasks}) <= max_tasks")
        self.container = task.add_container(
            container_name,
            image=image,
            command=list(command),
            environment={
                **environment,
                r.ENV.WORKER_CONCURRENCY: str(capacity.worker_concurrency),
                r.ENV.SERVICE_NAME: service_name,
                # DuckDB's memory, threads and spill space follow the task's size
                # (reportgrid/limits.py splits them between concurrent reports).
                **worker_size_environment(
                    memory_mib=capacity.worker_memory_mib,
                    vcpus=max(1, capacity.worker_cpu // 1024),
                    disk_mib=FARGATE_EPHEMERAL_STORAGE_MIB,
                ),
            },
            secrets=dict(secrets),
            logging=ecs.LogDrivers.aws_logs(stream_prefix=container_name, log_group=log_group),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
        )
        self.xray_daemon = xray_daemon_sidecar(task, self.container, log_group=log_group)
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task,
            desired_count=min_tasks,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
        )
        scaling = self.service.auto_scale_task_count(min_capacity=min_tasks, max_capacity=max_tasks)
        # Target tracking on backlog per task = visible messages / running tasks (metric
        # math), AWS's recipe for queue workers: the fleet grows with the work waiting, not
        # with CPU. The L2 only takes single metrics, so the policy is written in L1 terms.
        self.backlog_policy = appscaling.CfnScalingPolicy(
            self,
            "BacklogPerTask",
            policy_name=BACKLOG_POLICY_NAME,
            policy_type="TargetTrackingScaling",
            scaling_target_id=cast(
                appscaling.ScalableTarget, scaling.node.find_child("Target")
            ).scalable_target_id,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=float(capacity.worker_backlog_per_task),
                scale_out_cooldown=60,
                scale_in_cooldown=300,
                customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                    metrics=[
                        _metric_query(
                            "visible",
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesVisible",
                            {"QueueName": queue.queue_name},
                        ),
                        _metric_query(
                            "tasks",
                            "ECS/ContainerInsights",
                            "RunningTaskCount",
                            {
                                "ClusterName": cluster.cluster_name,
                                "ServiceName": self.service.service_name,
                            },
                        ),
                        appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                            id="backlog",
                            expression="visible / tasks",
                            label="messages waiting per running task",
                            return_data=True,
                        ),
                    ]
                ),
            ),
        )
        suppress(
            task,
            "AwsSolutions-ECS2",
            "The environment holds resource names, URLs and sizes only; the id secrets and "
            "the Valkey URL come from Secrets Manager as ECS secrets.",
        )


def xray_daemon_sidecar(
    task: ecs.FargateTaskDefinition, worker: ecs.ContainerDefinition, *, log_group: logs.ILogGroup
) -> ecs.ContainerDefinition:
    """The X-Ray daemon beside the worker: the worker sends each report's segment to it
    over UDP (functions/segments.py) and the daemon uploads them with the task role.
    Settings from "Running the X-Ray daemon on Amazon ECS" (the official image, 32 CPU
    units, 256 MiB reserved, containerPort 2000/udp); in awsvpc mode the task's containers
    share localhost, hence 127.0.0.1. Not essential: a daemon that stops loses segments,
    never reports (the send is fire and forget)."""
    daemon = task.add_container(
        XRAY_DAEMON_CONTAINER,
        image=ecs.ContainerImage.from_registry(XRAY_DAEMON_IMAGE),
        cpu=32,
        memory_reservation_mib=256,
        essential=False,
        port_mappings=[ecs.PortMapping(container_port=2000, protocol=ecs.Protocol.UDP)],
        logging=ecs.LogDrivers.aws_logs(stream_prefix=XRAY_DAEMON_CONTAINER, log_group=log_group),
    )
    worker.add_environment(XRAY_DAEMON_ADDRESS_ENV, "127.0.0.1:2000")
    # What the daemon calls (AWSXRayDaemonWriteAccess without the sampling calls: the
    # workers decide sampling themselves and never ask the daemon for rules).
    task.add_to_task_role_policy(
        iam.PolicyStatement(actions=list(XRAY_DAEMON_ACTIONS), resources=["*"])
    )
    suppress(
        task.task_role,
        "AwsSolutions-IAM5",
        "xray:PutTraceSegments and xray:PutTelemetryRecords accept no resource but * "
        "(Service Authorization Reference, AWS X-Ray).",
        findings=["Resource::*"],
    )
    return daemon


def _metric_query(
    id_: str, namespace: str, name: str, dimensions: Mapping[str, str]
) -> appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty:
    prop = appscaling.CfnScalingPolicy
    return prop.TargetTrackingMetricDataQueryProperty(
        id=id_,
        return_data=False,
        metric_stat=prop.TargetTrackingMetricStatProperty(
            stat="Average",
            metric=prop.TargetTrackingMetricProperty(
                namespace=namespace,
                metric_name=name,
                dimensions=[
                    prop.TargetTrackingMetricDimensionProperty(name=k, value=v)
                    for k, v in dimensions.items()
                ],
            ),
        ),
    )
