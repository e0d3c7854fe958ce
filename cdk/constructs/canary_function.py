"""The synthetic canary's function and its schedule: an EventBridge rule invokes it every
minute, once (no retry: a late probe measures nothing). It runs in the region's VPC so it
reaches the region's own (internal) listener, and reads its API key by ARN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.constructs.python_function import python_function

HANDLER: Final = "functions.canary.handler.handler"
# As functions/canary/handler.py and functions/canary/settings.py name them (a test checks).
SERVICE: Final = "reportgrid-canary"
SUCCESS_METRIC: Final = "CanarySuccess"
LATENCY_METRIC: Final = "CanaryLatency"
ENV_ENDPOINT: Final = "REPORTGRID_CANARY_ENDPOINT"
ENV_TLS: Final = "REPORTGRID_CANARY_TLS"
ENV_TLS_NAME: Final = "REPORTGRID_CANARY_TLS_NAME"
ENV_API_KEY_SECRET_ARN: Final = "REPORTGRID_CANARY_API_KEY_ARN"  # noqa: S105 -- a name
ENV_DEADLINE_SECONDS: Final = "REPORTGRID_CANARY_DEADLINE_SECONDS"
SCHEDULE: Final = Duration.minutes(1)
MEMORY_MIB: Final = 512  # the SDK and one gRPC channel; no engine
TIMEOUT_SECONDS: Final = 60  # the probe's own deadline is 40 s (settings.py)


class CanaryFunction(Construct):
    """Exposes `function` and `schedule`."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        vpc: ec2.IVpc,
        endpoint: str,
        tls_name: str,
        api_key: secretsmanager.ISecret,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.function = python_function(
            self,
            code=code,
            handler=HANDLER,
            service=SERVICE,
            environment={
                **environment,
                ENV_ENDPOINT: endpoint,
                ENV_TLS: "true",
                ENV_TLS_NAME: tls_name,
                ENV_API_KEY_SECRET_ARN: api_key.secret_arn,
            },
            memory_mib=MEMORY_MIB,
            timeout_seconds=TIMEOUT_SECONDS,
            vpc=vpc,
        )
        api_key.grant_read(self.function)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Reportgrid synthetic canary: one probe a minute",
            schedule=events.Schedule.rate(SCHEDULE),
            targets=[
                targets.LambdaFunction(
                    self.function, retry_attempts=0, max_event_age=Duration.minutes(1)
                )
            ],
        )
