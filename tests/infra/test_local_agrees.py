"""The CDK data and regional stacks declare the same table and queues as the local region
(reportgrid.local.bootstrap), so `make dev` runs against what production runs."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from reportgrid import resources as r
from reportgrid.local.bootstrap import table_definition
from tests.infra.conftest import Synthesized


def _one(template: Template, type_: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    found = template.find_resources(type_, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    properties: dict[str, Any] = next(iter(found.values()))["Properties"]
    return properties


def test_table_key_schema_and_attributes_agree(synth: Synthesized) -> None:
    local = table_definition()
    table = _one(synth.data, "AWS::DynamoDB::GlobalTable")
    assert table["TableName"] == local["TableName"]
    assert table["KeySchema"] == local["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        local["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    assert table["BillingMode"] == local["BillingMode"]


def test_tenant_index_agrees(synth: Synthesized) -> None:
    (local_index,) = table_definition()["GlobalSecondaryIndexes"]
    (index,) = _one(synth.data, "AWS::DynamoDB::GlobalTable")["GlobalSecondaryIndexes"]
    assert index["IndexName"] == local_index["IndexName"] == r.TENANT_INDEX_NAME
    assert index["KeySchema"] == local_index["KeySchema"]
    assert index["Projection"] == local_index["Projection"]


def test_ttl_and_stream_agree(synth: Synthesized) -> None:
    table = _one(synth.data, "AWS::DynamoDB::GlobalTable")
    # The local bootstrap enables TTL on this attribute (update_time_to_live).
    assert table["TimeToLiveSpecification"] == {"AttributeName": r.TTL_ATTRIBUTE, "Enabled": True}
    local_stream = table_definition()["StreamSpecification"]
    assert table["StreamSpecification"]["StreamViewType"] == local_stream["StreamViewType"]


def test_queues_redrive_like_the_local_region(synth: Synthesized) -> None:
    template = synth.regional("eu-west-1")
    queues = template.find_resources("AWS::SQS::Queue")
    by_name = {q["Properties"]["QueueName"]: (lid, q["Properties"]) for lid, q in queues.items()}
    for name, dlq_name, receives, visibility in (
        (
            r.HEAVY_QUEUE_NAME,
            r.HEAVY_DLQ_NAME,
            r.HEAVY_MAX_RECEIVES,
            r.HEAVY_VISIBILITY_TIMEOUT_SECONDS,
        ),
        (
            r.STANDBY_QUEUE_NAME,
            r.STANDBY_DLQ_NAME,
            r.HEAVY_MAX_RECEIVES,
            r.HEAVY_VISIBILITY_TIMEOUT_SECONDS,
        ),
        (
            r.STREAM_FAILURE_QUEUE_NAME,
            r.STREAM_FAILURE_DLQ_NAME,
            r.STREAM_FAILURE_MAX_RECEIVES,
            r.STREAM_FAILURE_VISIBILITY_TIMEOUT_SECONDS,
        ),
    ):
        _, props = by_name[name]
        dlq_logical_id, _ = by_name[dlq_name]
        redrive = props["RedrivePolicy"]
        # The same names and numbers the local bootstrap uses (from reportgrid.resources).
        assert int(redrive["maxReceiveCount"]) == receives
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_logical_id, "Arn"]}
        assert props["VisibilityTimeout"] == visibility
        assert props["MessageRetentionPeriod"] == 1209600


def test_stream_name_matches_resources(synth: Synthesized) -> None:
    synth.regional("us-east-1").has_resource_properties(
        "AWS::Kinesis::Stream",
        {"Name": r.TASK_STREAM_NAME, "RetentionPeriodHours": r.TASK_RETENTION_HOURS},
    )
