"""Webhooks in the template: the rule on the bus, the queue and DLQ, the delivery function
with the real retry schedule and without the local-only loopback setting, its grants, the
root secret replicated by the data stack, and the alarms."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from cdk.constructs.webhooks import HANDLER
from reportgrid import resources as r
from reportgrid.local.bootstrap import webhook_event_pattern
from tests.infra.conftest import Synthesized, function_by_handler, role_statements


def _variables(template: Template) -> dict[str, Any]:
    _, function = function_by_handler(template, HANDLER)
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def test_the_function_keeps_the_real_schedule_and_never_allows_loopback(
    synth: Synthesized,
) -> None:
    for region in ("eu-west-1", "us-east-1"):
        variables = _variables(synth.regional(region))
        assert float(variables[r.ENV.WEBHOOK_RETRY_WINDOW_SECONDS]) >= 24 * 3600
        assert float(variables[r.ENV.WEBHOOK_BACKOFF_BASE_SECONDS]) > 0
        assert r.ENV.WEBHOOK_SECRET_ARN in variables
        assert r.ENV.WEBHOOK_SECRET not in variables  # by ARN: never the value
    # No process of any stack may allow loopback webhooks: only the local launch sets it.
    for template in synth.templates.values():
        assert r.ENV.WEBHOOK_ALLOW_LOOPBACK not in json.dumps(template.to_json())


def test_the_function_runs_outside_the_vpc_from_its_queue(eu: Template) -> None:
    logical_id, function = function_by_handler(eu, HANDLER)
    assert "VpcConfig" not in function["Properties"]
    assert function["Properties"]["Timeout"] == r.WEBHOOK_TIMEOUT_SECONDS
    eu.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": logical_id},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "EventSourceArn": Match.any_value(),
        },
    )
    eu.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": r.WEBHOOK_QUEUE_NAME,
            "VisibilityTimeout": r.WEBHOOK_VISIBILITY_TIMEOUT_SECONDS,
            "RedrivePolicy": {
                "deadLetterTargetArn": Match.any_value(),
                "maxReceiveCount": r.WEBHOOK_MAX_RECEIVES,
            },
        },
    )
    eu.has_resource_properties("AWS::SQS::Queue", {"QueueName": r.WEBHOOK_DLQ_NAME})


def test_the_rule_sends_terminal_events_from_the_bus_to_the_queue(eu: Template) -> None:
    rules = eu.find_resources("AWS::Events::Rule", {"Properties": {"Name": r.WEBHOOK_RULE_NAME}})
    (rule,) = rules.values()
    props = rule["Properties"]
    assert "CompletionEventsBus" in json.dumps(props["EventBusName"])  # the region's bus
    # The local region creates the same rule (reportgrid/local/bootstrap.py).
    assert props["EventPattern"] == webhook_event_pattern()
    (target,) = props["Targets"]
    assert "WebhooksQueue" in json.dumps(target["Arn"])
    # Only this rule may send to the queue.
    eu.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": Match.array_with(["sqs:SendMessage"]),
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Condition": {"ArnEquals": {"aws:SourceArn": Match.any_value()}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_grants_are_its_queues_tenant_items_and_its_secrets(eu: Template) -> None:
    statements = role_statements(eu, "WebhooksFunction")
    text = json.dumps(statements)
    actions = {action for s in statements for action in s["Action"]}
    assert "dynamodb:GetItem" in actions
    assert not {a for a in actions if a.startswith("dynamodb:") and a != "dynamodb:GetItem"}
    assert not {a for a in actions if a.startswith("s3:") or a.startswith("kinesis:")}
    (get_item,) = [s for s in statements if s["Action"] == ["dynamodb:GetItem"]]
    assert r.TABLE_NAME in json.dumps(get_item["Resource"])  # the table, no index
    assert "index" not in json.dumps(get_item["Resource"])
    assert "secretsmanager:GetSecretValue" in actions
    assert r.WEBHOOK_SECRET_NAME in text


def test_the_data_stack_replicates_the_root_secret(synth: Synthesized) -> None:
    synth.data.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"Name": r.WEBHOOK_SECRET_NAME, "ReplicaRegions": [{"Region": "us-east-1"}]},
    )


def test_given_up_webhooks_page(eu: Template) -> None:
    alarms = eu.find_resources("AWS::CloudWatch::Alarm")
    given_up = [
        a
        for a in alarms.values()
        if a["Properties"].get("MetricName") == r.METRIC.WEBHOOKS_GIVEN_UP
    ]
    (alarm,) = given_up
    assert alarm["Properties"]["Dimensions"] == [
        {"Name": r.METRIC_SERVICE_DIMENSION, "Value": r.SERVICE_WEBHOOKS}
    ]
    assert alarm["Properties"]["Threshold"] == 0
    assert alarm["Properties"]["AlarmActions"]
