"""The scheduler in the template (docs/SCHEDULES.md "Where it runs in AWS"): one
rate(1 minute) schedule per region in its group, invoking the scheduler function with the
fire minute, retries bounded and a DLQ; Scheduler's role assumable only by Scheduler for
this account's group; the function's runtime settings; the alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from cdk.constructs.scheduler import HANDLER
from reportgrid import resources as r
from tests.infra.conftest import ACCOUNT, INPUT_BUCKET, Synthesized, flatten, function_by_handler

REGIONS = ("eu-west-1", "us-east-1")


def _only(template: Template, type_: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = template.find_resources(type_).items()
    return logical_id, dict(resource)


@pytest.mark.parametrize("region", REGIONS)
def test_one_schedule_a_minute_invokes_the_function_with_its_minute(
    synth: Synthesized, region: str
) -> None:
    template = synth.regional(region)
    function_id, _ = function_by_handler(template, HANDLER)
    _, group = _only(template, "AWS::Scheduler::ScheduleGroup")
    assert group["Properties"]["Name"] == r.SCHEDULER_GROUP_NAME
    _, schedule = _only(template, "AWS::Scheduler::Schedule")
    props = schedule["Properties"]
    assert props["Name"] == r.SCHEDULER_SCHEDULE_NAME
    assert props["GroupName"] == r.SCHEDULER_GROUP_NAME
    assert props["ScheduleExpression"] == "rate(1 minute)"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert props["State"] == "ENABLED"
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    # Scheduler fills in the invocation's minute (a context attribute), the handler's "now".
    assert json.loads(target["Input"]) == {"scheduled_time": "<aws.scheduler.scheduled-time>"}
    # Bounded: a minute not delivered within a minute is the next run's to catch up.
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 60
    assert 0 < target["RetryPolicy"]["MaximumRetryAttempts"] <= 5
    dlq = flatten(target["DeadLetterConfig"]["Arn"], region)
    assert "SchedulerDlq" in json.dumps(dlq)
    template.has_resource_properties(
        "AWS::SQS::Queue", {"QueueName": r.SCHEDULER_DLQ_NAME, "SqsManagedSseEnabled": True}
    )
    assert "SchedulerRole" in json.dumps(target["RoleArn"])


def test_only_scheduler_may_assume_its_role_for_this_accounts_group(eu: Template) -> None:
    roles = {
        logical_id: role
        for logical_id, role in eu.find_resources("AWS::IAM::Role").items()
        if logical_id.startswith("SchedulerRole")
    }
    ((_, role),) = roles.items()
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    # Confused-deputy protection (Scheduler docs, cross-service-confused-deputy-prevention).
    equals = statement["Condition"]["StringEquals"]
    assert equals["aws:SourceAccount"] == ACCOUNT
    assert "SchedulerGroup" in json.dumps(equals["aws:SourceArn"])  # the group's own ARN
    assert not role["Properties"].get("ManagedPolicyArns")


def test_the_function_runs_alone_briefly_and_outside_the_vpc(eu: Template) -> None:
    logical_id, function = function_by_handler(eu, HANDLER)
    props = function["Properties"]
    assert props["ReservedConcurrentExecutions"] == 1  # runs never overlap into double work
    assert props["Timeout"] <= 60  # a run ends within its minute
    assert "VpcConfig" not in props
    assert props["TracingConfig"] == {"Mode": "Active"}
    variables = props["Environment"]["Variables"]
    assert variables[r.ENV.SERVICE_NAME] == r.SERVICE_SCHEDULER
    assert variables[r.ENV.TABLE_NAME] == r.TABLE_NAME
    assert variables[r.ENV.PEER_REGION] == "us-east-1"
    assert r.ENV.ID_SECRETS_ARN in variables
    assert variables[r.ENV.INPUT_BUCKETS] == INPUT_BUCKET  # templates re-validated
    assert not eu.find_resources(
        "AWS::Lambda::EventSourceMapping", {"Properties": {"FunctionName": {"Ref": logical_id}}}
    )
    # A failed run is not repeated: the next minute's run fires what it left due.
    eu.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": logical_id},
            "MaximumRetryAttempts": 0,
            "MaximumEventAgeInSeconds": 120,
        },
    )


def _alarm(template: Template, **props: Any) -> dict[str, Any]:
    found = [
        a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if all(a["Properties"].get(k) == v for k, v in props.items())
    ]
    assert len(found) == 1, f"{len(found)} alarms with {props}"
    return dict(found[0])


def test_alarms_page_on_errors_dead_letters_silence_lag_and_failed_fires(eu: Template) -> None:
    dimension = [{"Name": r.METRIC_SERVICE_DIMENSION, "Value": r.SERVICE_SCHEDULER}]
    lag = _alarm(eu, MetricName=r.METRIC.SCHEDULE_FIRE_LAG, Namespace=r.METRICS_NAMESPACE)
    assert lag["Dimensions"] == dimension
    assert lag["Statistic"] == "Maximum"
    assert lag["Threshold"] == 120
    failed = _alarm(eu, MetricName=r.METRIC.SCHEDULE_FIRES_FAILED, Namespace=r.METRICS_NAMESPACE)
    assert failed["Dimensions"] == dimension
    assert (failed["Threshold"], failed["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    (dead,) = [
        a["Properties"]
        for a in eu.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and "SchedulerDlq" in json.dumps(a["Properties"]["Dimensions"])
    ]
    assert dead["Threshold"] == 0
    errors = [
        a["Properties"]
        for a in eu.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") in ("Errors", "Invocations")
        and "SchedulerFunction" in json.dumps(a["Properties"].get("Dimensions"))
    ]
    by_metric = {a["MetricName"]: a for a in errors}
    assert set(by_metric) == {"Errors", "Invocations"}
    # No run for 5 minutes breaches, missing data included (nothing runs, nothing reports).
    silent = by_metric["Invocations"]
    assert silent["ComparisonOperator"] == "LessThanThreshold"
    assert silent["TreatMissingData"] == "breaching"
    for alarm in (lag, failed, dead, *errors):
        assert alarm["AlarmActions"], "every scheduler alarm pages"
