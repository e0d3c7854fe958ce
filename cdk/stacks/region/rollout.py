"""Rolling back inside a region (with the pipeline): every deploy of this region watches
its own alarms and undoes itself when they fire, before the pipeline's bake step looks.

- The ECS services (the edge, the queue worker, the standby) keep their deployment circuit
  breaker with rollback (tasks that do not start or stay healthy) and get deployment alarms
  with rollback (ROLLBACK_ON_ALARM): ECS watches them during the rolling update and a bake
  time after it that it derives from the alarms' periods, and returns the service to its
  last completed deployment when one is in ALARM. Each service is judged by what its own
  failure would move: the edge by its 5xx, faults and submit latency; the queue worker by
  the share of its reports failing; the standby, which emits no metrics of its own, by its
  queue's oldest message (slow: 15 minutes; its circuit breaker and the pipeline's bake
  catch a broken standby sooner). An alarm whose metric names the service it guards
  (the standby's RunningTaskCount) would be a circular reference, so none is used.
- The stream worker's Kinesis mapping invokes the alias `live` (cdk/constructs/
  stream_worker.py); CodeDeploy moves the alias to the version this deploy published, 10 %
  of the invocations for 5 minutes first, and moves it back when the function's error
  alarm fires (or the deployment fails or is stopped). CloudFormation waits for it, so a
  rolled-back alias fails the stack update, which CloudFormation then rolls back too.

A deploy that starts while one of its alarms is already in ALARM is judged by it too: clear
the cause (or the alarm) before deploying a fix over it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from cdk.constructs.nag import suppress
from cdk.stacks.region.edge import Edge
from cdk.stacks.region.workers import Workers

EDGE_ALARMS: Final = ("EdgeElb5xx", "EdgeFaults", "EdgeLatency")
QUEUE_WORKER_ALARMS: Final = ("QueueWorkerFailureRate",)
STANDBY_ALARMS: Final = ("StandbyQueueOldest",)
STREAM_WORKER_ALARMS: Final = ("StreamWorkerErrors",)
STREAM_WORKER_DEPLOYMENT: Final = codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES


class Rollout:
    """Exposes `deployment_alarms` (service -> alarm names) and `stream_worker_deployment`
    (the CodeDeploy deployment group of the stream worker's alias)."""

    def __init__(
        self,
        scope: Construct,
        *,
        edge: Edge,
        workers: Workers,
        alarms: Mapping[str, cw.Alarm],
    ) -> None:
        self.deployment_alarms: dict[str, tuple[str, ...]] = {}
        for name, service, guards in (
            ("edge", edge.service.service, EDGE_ALARMS),
            ("queue worker", workers.queue_worker.service, QUEUE_WORKER_ALARMS),
            ("standby", workers.standby_worker.service, STANDBY_ALARMS),
        ):
            self._guard(service, [alarms[alarm] for alarm in guards])
            self.deployment_alarms[name] = guards
        alias = workers.stream_worker.alias
        if alias is None:
            raise ValueError("the stream worker needs its live alias for a canary deployment")
        self.stream_worker_deployment = codedeploy.LambdaDeploymentGroup(
            scope,
            "StreamWorkerDeployment",
            alias=alias,
            deployment_config=STREAM_WORKER_DEPLOYMENT,
            alarms=[alarms[alarm] for alarm in STREAM_WORKER_ALARMS],
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        suppress(
            self.stream_worker_deployment.role,
            "AwsSolutions-IAM4",
            "AWSCodeDeployRoleForLambdaLimited: AWS's managed policy for CodeDeploy's Lambda "
            "deployments (shift the alias, read the alarms); scoped to functions whose name "
            "CodeDeploy is given.",
            findings=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSCodeDeployRoleForLambdaLimited"
            ],
        )

    @staticmethod
    def _guard(service: ecs.BaseService, alarms: Sequence[cw.Alarm]) -> None:
        service.enable_deployment_alarms(
            [alarm.alarm_name for alarm in alarms],
            behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM,
        )
