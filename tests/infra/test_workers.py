"""Workers: the Lambda on the Kinesis stream and the Fargate worker scaled on backlog."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from cdk.constructs.queue_worker import (
    BACKLOG_POLICY_NAME,
    STANDBY_COMMAND,
    WORKER_COMMAND,
    XRAY_DAEMON_ACTIONS,
    XRAY_DAEMON_ADDRESS_ENV,
    XRAY_DAEMON_CONTAINER,
    XRAY_DAEMON_IMAGE,
)
from cdk.constructs.stream_worker import HANDLER
from reportgrid import resources as r
from reportgrid.settings import load_settings
from tests.infra.conftest import Synthesized, container, function_by_handler


def test_lambda_runs_the_stream_worker_handler(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": HANDLER,
            "Runtime": "python3.12",
            "Architectures": ["x86_64"],
            "Timeout": r.LAMBDA_TIMEOUT_SECONDS,
            "VpcConfig": Match.object_like({"SubnetIds": Match.any_value()}),
            "Environment": {
                "Variables": Match.object_like(
                    {
                        r.ENV.REGION: "eu-west-1",
                        r.ENV.TABLE_NAME: r.TABLE_NAME,
                        r.ENV.SERVICE_NAME: r.SERVICE_STREAM_WORKER,
                        r.ENV.METRICS_NAMESPACE: r.METRICS_NAMESPACE,
                        r.ENV.ID_SECRETS_ARN: Match.any_value(),
                        r.ENV.REDIS_URL_ARN: Match.any_value(),
                        # It never talks to the peer region (the mirror does).
                        r.ENV.PEER_STANDBY_QUEUE_URL: Match.absent(),
                    }
                )
            },
        },
    )


def test_lambda_gets_no_plaintext_secrets(eu: Template) -> None:
    (function,) = eu.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": HANDLER}}
    ).values()
    variables = function["Properties"]["Environment"]["Variables"]
    # It gets the secrets' ARNs (resolved at cold start), never their values.
    assert f":secret:{r.ID_SECRETS_SECRET_NAME}" in json.dumps(variables[r.ENV.ID_SECRETS_ARN])
    assert "Ref" in json.dumps(variables[r.ENV.REDIS_URL_ARN])
    for function in eu.find_resources("AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert r.ENV.ID_SECRETS not in variables
        assert r.ENV.REDIS_URL not in variables


def test_kinesis_event_source_bisects_bounds_and_reports_item_failures(
    synth: Synthesized,
) -> None:
    capacity = synth.config.capacity
    template = synth.regional("eu-west-1")
    (failure_queue,) = template.find_resources(
        "AWS::SQS::Queue", {"Properties": {"QueueName": r.STREAM_FAILURE_QUEUE_NAME}}
    )
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BisectBatchOnFunctionError": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRetryAttempts": capacity.lambda_max_retries,
            "MaximumRecordAgeInSeconds": capacity.lambda_max_record_age_hours * 3600,
            "ParallelizationFactor": capacity.lambda_parallelization_factor,
            "BatchSize": capacity.lambda_batch_size,
            "StartingPosition": "TRIM_HORIZON",
            "DestinationConfig": {
                "OnFailure": {"Destination": {"Fn::GetAtt": [failure_queue, "Arn"]}}
            },
        },
    )


def test_queue_worker_runs_the_worker_command_with_its_settings(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "ContainerDefinitions": Match.array_with(
                [
                    Match.object_like(
                        {
                            "Command": ["python", "-m", "functions.queue_worker"],
                            "Environment": Match.array_with(
                                [{"Name": r.ENV.SERVICE_NAME, "Value": r.SERVICE_QUEUE_WORKER}]
                            ),
                            "Secrets": Match.array_with(
                                [Match.object_like({"Name": r.ENV.ID_SECRETS})]
                            ),
                        }
                    )
                ]
            )
        },
    )


@pytest.mark.parametrize("command", [list(WORKER_COMMAND), list(STANDBY_COMMAND)])
def test_fargate_workers_send_segments_to_an_xray_daemon_sidecar(
    eu: Template, command: list[str]
) -> None:
    # The worker points its segments at the sidecar in its own task (awsvpc: localhost)...
    worker = container(eu, command)
    variables = {v["Name"]: v["Value"] for v in worker["Environment"]}
    assert variables[XRAY_DAEMON_ADDRESS_ENV] == "127.0.0.1:2000"
    ((task_id, task),) = (
        (lid, t)
        for lid, t in eu.find_resources("AWS::ECS::TaskDefinition").items()
        if worker in t["Properties"]["ContainerDefinitions"]
    )
    # ...the daemon as the X-Ray guide's ECS task definition has it, not essential...
    (daemon,) = (
        c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == XRAY_DAEMON_CONTAINER
    )
    assert daemon["Image"] == XRAY_DAEMON_IMAGE
    assert daemon["Essential"] is False
    assert (daemon["Cpu"], daemon["MemoryReservation"]) == (32, 256)
    assert daemon["PortMappings"] == [{"ContainerPort": 2000, "Protocol": "udp"}]
    # ...and uploads them under the task role.
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    actions = {
        action
        for policy in eu.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Resource"] == "*"
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert set(XRAY_DAEMON_ACTIONS) <= actions, (task_id, actions)


def test_queue_worker_scales_on_backlog_per_task(synth: Synthesized) -> None:
    template = synth.regional("us-east-1")
    # The heavy worker on the heavy queue, the standby worker on the standby queue.
    policies = template.find_resources(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {"Properties": {"PolicyName": BACKLOG_POLICY_NAME}},
    )
    assert len(policies) == 2
    for prefix, queue_name in (
        ("QueueWorker", r.HEAVY_QUEUE_NAME),
        ("StandbyWorker", r.STANDBY_QUEUE_NAME),
    ):
        (queue,) = template.find_resources(
            "AWS::SQS::Queue", {"Properties": {"QueueName": queue_name}}
        )
        (policy,) = (p for lid, p in policies.items() if lid.startswith(prefix))
        config = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert policy["Properties"]["PolicyType"] == "TargetTrackingScaling"
        assert config["TargetValue"] == synth.config.capacity.worker_backlog_per_task
        queries = {q["Id"]: q for q in config["CustomizedMetricSpecification"]["Metrics"]}
        visible = queries["visible"]["MetricStat"]["Metric"]
        assert visible["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert visible["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        ]
        tasks = queries["tasks"]["MetricStat"]["Metric"]
        assert tasks["MetricName"] == "RunningTaskCount"
        assert prefix in json.dumps(tasks["Dimensions"])
        assert queries["backlog"]["Expression"] == "visible / tasks"
        assert queries["backlog"]["ReturnData"] is True


def test_least_privilege_grants(eu: Template) -> None:
    # The edge writes the stream and may delete results (DeleteReport) but never write them;
    # the workers write results and never the stream.
    policies = eu.find_resources("AWS::IAM::Policy")
    by_role: dict[str, set[str]] = {}
    for policy in policies.values():
        actions: set[str] = set()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            acts = statement["Action"]
            actions |= {acts} if isinstance(acts, str) else set(acts)
        for role in policy["Properties"].get("Roles", []):
            by_role.setdefault(role["Ref"], set()).update(actions)
    edge = next(v for k, v in by_role.items() if k.startswith("EdgeTaskTaskRole"))
    worker = next(v for k, v in by_role.items() if k.startswith("QueueWorkerTaskTaskRole"))
    assert "kinesis:PutRecords" in edge
    assert "s3:DeleteObject*" in edge
    assert not any(a.startswith("s3:Put") for a in edge)
    assert "sqs:ReceiveMessage" not in edge
    assert "sqs:ReceiveMessage" in worker
    assert "kinesis:PutRecords" not in worker


# The workers read inputs only through the input reader role: tests/infra/test_input_isolation.py.


def test_every_report_runner_is_told_its_size_by_the_template(synth: Synthesized) -> None:
    """The engine sizes DuckDB (memory, threads, spill) from these; without them it falls
    back to a default that is right for neither the Lambda nor the Fargate task."""
    capacity = synth.config.capacity
    template = synth.regional("eu-west-1")
    _, function = function_by_handler(template, HANDLER)
    lambda_env = function["Properties"]["Environment"]["Variables"]
    assert lambda_env[r.ENV.WORKER_MEMORY_MIB] == str(capacity.lambda_memory_mib)
    assert function["Properties"]["MemorySize"] == capacity.lambda_memory_mib
    assert int(lambda_env[r.ENV.WORKER_VCPUS]) >= 1
    # Lambda's /tmp is 512 MB unless EphemeralStorage says otherwise.
    storage = function["Properties"].get("EphemeralStorage", {}).get("Size", 512)
    assert lambda_env[r.ENV.WORKER_DISK_MIB] == str(storage)
    for command in (list(WORKER_COMMAND), list(STANDBY_COMMAND)):
        variables = {v["Name"]: v["Value"] for v in container(template, command)["Environment"]}
        assert variables[r.ENV.WORKER_MEMORY_MIB] == str(capacity.worker_memory_mib)
        assert variables[r.ENV.WORKER_VCPUS] == str(capacity.worker_cpu // 1024)
        assert variables[r.ENV.WORKER_DISK_MIB] == str(20 * 1024)
        # What the template says parses as the worker's settings.
        settings = load_settings(
            {
                **{k: v for k, v in variables.items() if isinstance(v, str)},
                r.ENV.ID_SECRETS: "0" * 64,
            }
        )
        assert settings.worker_memory_mib == capacity.worker_memory_mib
