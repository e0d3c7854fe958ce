"""Monitoring: the dashboard, paging alarms on the SNS topic, the composite alarm."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from reportgrid import resources as r
from tests.infra.conftest import ALARM_EMAIL, Synthesized

PAGING = (
    "EdgeNoHealthyTargets",
    "EdgeElb5xx",
    "EdgeFaults",
    "StreamIteratorAge",
    "StreamWorkerErrors",
    "HeavyQueueOldest",
    "DeadLetters",
    "DynamoDbThrottles",
)


def _topic(template: Template) -> str:
    (topic,) = template.find_resources("AWS::SNS::Topic")
    return topic


def test_topic_is_encrypted_tls_only_and_mails_the_on_call(eu: Template) -> None:
    topic = _topic(eu)
    eu.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    eu.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": ALARM_EMAIL, "TopicArn": {"Ref": topic}},
    )
    eu.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_every_paging_alarm_exists_and_notifies_the_topic(eu: Template) -> None:
    topic = _topic(eu)
    alarms = eu.find_resources("AWS::CloudWatch::Alarm")
    found = {lid for lid in alarms if any(lid.startswith(f"Monitoring{n}") for n in PAGING)}
    assert len(found) == len(PAGING), sorted(alarms)
    for lid in found:
        assert alarms[lid]["Properties"]["AlarmActions"] == [{"Ref": topic}], lid


def test_composite_region_unhealthy_alarm(eu: Template) -> None:
    topic = _topic(eu)
    eu.has_resource_properties(
        "AWS::CloudWatch::CompositeAlarm",
        {
            "AlarmName": "reportgrid-eu-west-1-unhealthy",
            "AlarmActions": [{"Ref": topic}],
            "AlarmRule": Match.any_value(),
        },
    )
    (composite,) = eu.find_resources("AWS::CloudWatch::CompositeAlarm").values()
    rule = json.dumps(composite["Properties"]["AlarmRule"])
    for name in ("EdgeNoHealthyTargets", "EdgeElb5xx", "EdgeFaults", "StreamIteratorAge"):
        assert f"Monitoring{name}" in rule, name


def _dashboard_body(template: Template) -> str:
    (dash,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body: Any = dash["Properties"]["DashboardBody"]
    return json.dumps(body)


def test_region_dashboard_charts_the_operational_signals(eu: Template) -> None:
    body = _dashboard_body(eu)
    for metric in (
        r.METRIC.REQUESTS,
        r.METRIC.REQUEST_LATENCY,
        r.METRIC.REQUEST_FAULTS,
        r.METRIC.SHED_REQUESTS,
        r.METRIC.BATCH_SIZE,
        r.METRIC.CACHE_HITS,
        r.METRIC.CACHE_MISSES,
        "IteratorAge",
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesVisible",
        "Throttles",
        "Duration",
        "ReadThrottleEvents",
        "ReplicationLatency",
        "HTTPCode_Target_5XX_Count",
    ):
        assert metric in body, metric
    assert r.METRICS_NAMESPACE in body
    assert r.SERVICE_EDGE in body


def test_global_dashboard_compares_regions(synth: Synthesized) -> None:
    body = _dashboard_body(synth.global_)
    for region in synth.config.regions:
        assert region in body
    assert "AWS/GlobalAccelerator" in body
