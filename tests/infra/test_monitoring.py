"""Monitoring: the dashboard, paging alarms on the SNS topic, the composite alarm."""

from __future__ import annotations

import json
from typing import Any

import pytest
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
    "StreamWriteThrottled",
    "StreamFailures",
    "StreamFailureDrainErrors",
    "ReportsLost",
    "PoisonTasks",
    "StandbyQueueOldest",
    "StandbyHeartbeat",
    "MirrorErrors",
    "MirrorIteratorAge",
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


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _one(found: list[Any], what: str) -> Any:
    """The single match, or a failure that names what is missing (or repeated)."""
    if len(found) != 1:
        pytest.fail(f"expected exactly one {what}; the template has {len(found)}")
    return found[0]


def test_cloudwatch_alarms_may_publish_to_the_encrypted_topic(eu: Template) -> None:
    # Issue 12.5: the TLS deny alone let no alarm publish. The topic policy must allow
    # cloudwatch.amazonaws.com to sns:Publish (scoped to this account's alarms), keep the
    # TLS deny, and the topic's KMS key must let CloudWatch use it.
    topic = _topic(eu)
    policy = _one(
        [
            p["Properties"]
            for p in eu.find_resources("AWS::SNS::TopicPolicy").values()
            if {"Ref": topic} in p["Properties"]["Topics"]
        ],
        f"AWS::SNS::TopicPolicy on the alarm topic {topic}",
    )
    statements = policy["PolicyDocument"]["Statement"]
    publish = _one(
        [
            s
            for s in statements
            if s["Effect"] == "Allow"
            and "sns:Publish" in _as_list(s["Action"])
            and s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        ],
        "topic policy statement allowing cloudwatch.amazonaws.com to sns:Publish "
        "(without it no alarm can publish to the topic: the TLS deny refuses them)",
    )
    assert {"Ref": topic} in _as_list(publish["Resource"]), publish
    condition = publish["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == "111111111111"
    source_arn = json.dumps(condition["ArnLike"]["aws:SourceArn"])
    assert ":cloudwatch:eu-west-1:111111111111:alarm:*" in source_arn
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    ), "the topic policy has no deny of non-TLS (aws:SecureTransport false) requests"
    (topic_properties,) = (
        t["Properties"] for lid, t in eu.find_resources("AWS::SNS::Topic").items() if lid == topic
    )
    key_id = topic_properties["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = eu.find_resources("AWS::KMS::Key")[key_id]["Properties"]
    cloudwatch = [
        s
        for s in key["KeyPolicy"]["Statement"]
        if s["Effect"] == "Allow" and s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    actions = {a for s in cloudwatch for a in _as_list(s["Action"])}
    missing = {"kms:Decrypt", "kms:GenerateDataKey*"} - actions
    assert not missing, f"the topic's KMS key policy does not let CloudWatch use {missing}"


def _alarm(template: Template, name: str) -> dict[str, Any]:
    (alarm,) = (
        a["Properties"]
        for lid, a in template.find_resources("AWS::CloudWatch::Alarm").items()
        if lid.startswith(f"Monitoring{name}")
    )
    return dict(alarm)


def test_every_paging_alarm_exists_and_notifies_the_topic(eu: Template) -> None:
    topic = _topic(eu)
    alarms = eu.find_resources("AWS::CloudWatch::Alarm")
    found = {lid for lid in alarms if any(lid.startswith(f"Monitoring{n}") for n in PAGING)}
    assert len(found) == len(PAGING), sorted(alarms)
    for lid in found:
        assert alarms[lid]["Properties"]["AlarmActions"] == [{"Ref": topic}], lid


def _queue_id(template: Template, name: str) -> str:
    (lid,) = template.find_resources("AWS::SQS::Queue", {"Properties": {"QueueName": name}})
    return lid


def test_any_given_up_batch_pages(eu: Template) -> None:
    alarm = _alarm(eu, "StreamFailures")
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    queue = _queue_id(eu, r.STREAM_FAILURE_QUEUE_NAME)
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["EvaluationPeriods"] == 1


def test_a_task_stream_short_of_shards_pages(eu: Template) -> None:
    # Provisioned shards do not grow by themselves: throttled writes are the sign.
    alarm = _alarm(eu, "StreamWriteThrottled")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/Kinesis",
        "WriteProvisionedThroughputExceeded",
        "Sum",
    )
    (stream,) = eu.find_resources(
        "AWS::Kinesis::Stream", {"Properties": {"Name": r.TASK_STREAM_NAME}}
    )
    assert alarm["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": stream}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 1_000)


def test_a_lost_report_or_a_poison_task_pages_at_the_first_one(eu: Template) -> None:
    lost = _alarm(eu, "ReportsLost")
    assert (lost["Namespace"], lost["MetricName"]) == (
        r.METRICS_NAMESPACE,
        r.METRIC.STREAM_RECORDS_EXPIRED,
    )
    assert lost["Dimensions"] == [
        {"Name": r.METRIC_SERVICE_DIMENSION, "Value": r.SERVICE_STREAM_FAILURES}
    ]
    poison = _alarm(eu, "PoisonTasks")
    read = {
        (
            q["MetricStat"]["Metric"]["MetricName"],
            q["MetricStat"]["Metric"]["Dimensions"][0]["Value"],
        )
        for q in poison["Metrics"]
        if "MetricStat" in q
    }
    assert read == {
        (r.METRIC.POISON_RECORDS, r.SERVICE_STREAM_WORKER),
        (r.METRIC.POISON_RECORDS, r.SERVICE_STREAM_FAILURES),
    }, "the poison alarm must read both the stream worker's and the drain's count"
    for alarm in (lost, poison):
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        assert (alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (1, "notBreaching")


def test_standby_queue_age_and_dead_letters_page(eu: Template) -> None:
    alarm = _alarm(eu, "StandbyQueueOldest")
    assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert _queue_id(eu, r.STANDBY_QUEUE_NAME) in json.dumps(alarm["Dimensions"])
    dead_letters = json.dumps(_alarm(eu, "DeadLetters")["Metrics"])
    for dlq in (r.STANDBY_DLQ_NAME, r.HEAVY_DLQ_NAME, r.STREAM_FAILURE_DLQ_NAME):
        assert _queue_id(eu, dlq) in dead_letters, dlq


def test_a_stopped_standby_heartbeat_pages(eu: Template) -> None:
    alarm = _alarm(eu, "StandbyHeartbeat")
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "ECS/ContainerInsights",
        "RunningTaskCount",
    )
    assert "StandbyWorkerService" in json.dumps(alarm["Dimensions"])
    # Fewer than one task, or no data at all (nothing running reports nothing).
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"


def test_mirror_errors_and_lag_page(eu: Template) -> None:
    (mirror,) = eu.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "functions.mirror.handler.handler"}}
    )
    for name, metric in (("MirrorErrors", "Errors"), ("MirrorIteratorAge", "IteratorAge")):
        alarm = _alarm(eu, name)
        assert alarm["MetricName"] == metric
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": mirror}}]


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
    (composite,) = eu.find_resources(
        "AWS::CloudWatch::CompositeAlarm",
        {"Properties": {"AlarmName": "reportgrid-eu-west-1-unhealthy"}},
    ).values()
    rule = json.dumps(composite["Properties"]["AlarmRule"])
    for name in ("EdgeNoHealthyTargets", "EdgeElb5xx", "EdgeFaults", "StreamIteratorAge"):
        assert f"Monitoring{name}" in rule, name
    # The multi-region safety net pages on its own: the region still serves without it,
    # so it is no reason to move traffic away.
    for name in ("Mirror", "Standby", "StreamFailure"):
        assert f"Monitoring{name}" not in rule, name


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
        "RunningTaskCount",
        "ApproximateNumberOfMessagesNotVisible",
    ):
        assert metric in body, metric
    assert r.METRICS_NAMESPACE in body
    assert r.SERVICE_EDGE in body


def test_global_dashboard_compares_regions(synth: Synthesized) -> None:
    body = _dashboard_body(synth.global_)
    for region in synth.config.regions:
        assert region in body
    assert "AWS/GlobalAccelerator" in body
