"""Ingest: the KMS-encrypted task stream, queues with DLQ redrive, TLS-only queue policies."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template

from cdk.config import Capacity
from reportgrid import resources as r
from tests.infra.conftest import Synthesized


def test_stream_is_kms_encrypted_and_provisioned_for_the_design_load(synth: Synthesized) -> None:
    # cdk.json leaves the default: provisioned shards sized by stream_shards_for (a fresh
    # on-demand stream would throttle 10,000 Submits/s for minutes; docs/PERFORMANCE.md).
    shards = synth.config.capacity.stream_shards
    assert shards == Capacity().stream_shards > 0
    synth.regional("eu-west-1").has_resource_properties(
        "AWS::Kinesis::Stream",
        {
            "Name": r.TASK_STREAM_NAME,
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "ShardCount": shards,
        },
    )


def test_heavy_queue_visibility_is_six_times_the_worker_timeout(eu: Template) -> None:
    assert r.HEAVY_VISIBILITY_TIMEOUT_SECONDS >= 6 * r.HEAVY_WORKER_TIMEOUT_SECONDS
    eu.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": r.HEAVY_QUEUE_NAME,
            "VisibilityTimeout": r.HEAVY_VISIBILITY_TIMEOUT_SECONDS,
            "RedrivePolicy": Match.object_like({"maxReceiveCount": r.HEAVY_MAX_RECEIVES}),
            "SqsManagedSseEnabled": True,
        },
    )


def test_every_queue_denies_plain_http(eu: Template) -> None:
    queues = eu.find_resources("AWS::SQS::Queue")
    # heavy, standby, stream failures and webhooks, each with its DLQ; the completion
    # events' on-failure queue; the scheduler target's DLQ
    assert len(queues) == 10
    policies = eu.find_resources(
        "AWS::SQS::QueuePolicy",
        {
            "Properties": {
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
            }
        },
    )
    covered = {q["Ref"] for policy in policies.values() for q in policy["Properties"]["Queues"]}
    assert covered == set(queues)
