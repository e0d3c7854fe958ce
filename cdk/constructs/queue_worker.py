"""The heavy-report worker: a Fargate service on the heavy (and standby) queue, scaled on
the SQS backlog per running task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.config import Capacity
from cdk.constructs.nag import suppress
from reportgrid import resources as r

WORKER_COMMAND = ["python", "-m", "functions.queue_worker"]
# On SIGTERM the worker stops taking work and finishes or releases what it holds; Fargate's
# longest stop timeout gives it two minutes before SIGKILL.
STOP_TIMEOUT_SECONDS = 120
BACKLOG_POLICY_NAME = "backlog-per-task"


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
    ) -> None:
        super().__init__(scope, id_)
        task = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=capacity.worker_cpu,
            memory_limit_mib=capacity.worker_memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.task_role = task.task_role
        self.execution_role = task.obtain_execution_role()
        log_group = logs.LogGroup(
            self,
            "Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        task.add_container(
            "worker",
            image=image,
            command=WORKER_COMMAND,
            environment={
                **environment,
                r.ENV.WORKER_CONCURRENCY: str(capacity.worker_concurrency),
                r.ENV.SERVICE_NAME: r.SERVICE_QUEUE_WORKER,
            },
            secrets=dict(secrets),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=log_group),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task,
            desired_count=capacity.worker_min_tasks,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
        )
        scaling = self.service.auto_scale_task_count(
            min_capacity=capacity.worker_min_tasks, max_capacity=capacity.worker_max_tasks
        )
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
