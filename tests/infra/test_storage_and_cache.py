"""Results bucket (encrypted, TLS-only, lifecycle, versioned, replicated) and Valkey."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match, Template

from cdk.constructs.cache import ACCESS_STRING, USER_NAME
from reportgrid import resources as r
from tests.infra.conftest import ACCOUNT, Synthesized, replication_rules


def test_results_bucket_is_encrypted_versioned_and_expires_results(eu: Template) -> None:
    eu.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": r.results_bucket_name(ACCOUNT, "eu-west-1"),
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicAcls": True}),
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {
                            "Prefix": r.RESULTS_KEY_PREFIX,
                            "ExpirationInDays": Match.any_value(),
                            "NoncurrentVersionExpiration": Match.any_value(),
                            "Status": "Enabled",
                        }
                    )
                ]
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "results-bucket/"}),
        },
    )


def test_results_replicate_to_the_peer_regions_bucket(synth: Synthesized) -> None:
    # A ring: eu-west-1 -> us-east-1 -> eu-west-1.
    for region, peer in (("eu-west-1", "us-east-1"), ("us-east-1", "eu-west-1")):
        # Put by the region's replication stack once both buckets exist (issue 12.3).
        (rule,) = replication_rules(synth, region)
        assert rule["Status"] == "Enabled"
        assert rule["Filter"] == {"Prefix": r.RESULTS_KEY_PREFIX}
        assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"}
        destination = json.dumps(rule["Destination"])
        assert f":s3:::{r.results_bucket_name(ACCOUNT, peer)}" in destination, destination


def test_results_bucket_denies_plain_http(eu: Template) -> None:
    (bucket,) = eu.find_resources(
        "AWS::S3::Bucket",
        {"Properties": {"BucketName": r.results_bucket_name(ACCOUNT, "eu-west-1")}},
    )
    eu.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
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
            },
        },
    )


def test_valkey_is_serverless_with_an_rbac_user_group(eu: Template) -> None:
    (group,) = eu.find_resources("AWS::ElastiCache::UserGroup").values()
    eu.has_resource_properties(
        "AWS::ElastiCache::ServerlessCache",
        {
            "Engine": "valkey",
            "ServerlessCacheName": r.PROJECT,
            "UserGroupId": group["Properties"]["UserGroupId"],
            "CacheUsageLimits": Match.object_like({"DataStorage": Match.any_value()}),
        },
    )
    (user,) = eu.find_resources(
        "AWS::ElastiCache::User", {"Properties": {"UserName": USER_NAME}}
    ).values()
    assert user["Properties"]["AccessString"] == ACCESS_STRING
    mode = user["Properties"]["AuthenticationMode"]
    assert mode["Type"] == "password"
    # The password is a deploy-time reference to the generated secret, never a literal.
    assert "{{resolve:secretsmanager:" in json.dumps(mode["Passwords"])
    eu.has_resource_properties(
        "AWS::ElastiCache::User",
        {"UserName": "default", "AccessString": Match.string_like_regexp("^off ")},
    )


def test_cache_admits_only_the_edge_the_workers_and_the_stream_worker(eu: Template) -> None:
    rules = eu.find_resources(
        "AWS::EC2::SecurityGroupIngress", {"Properties": {"FromPort": 6379, "ToPort": 6380}}
    )
    sources = {
        rule["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0] for rule in rules.values()
    }
    # Not the mirror or the drain: they run outside the VPC and never touch the cache.
    assert len(sources) == 4, sources
    for prefix in ("EdgeService", "QueueWorkerService", "StandbyWorkerService", "StreamWorker"):
        assert any(s.startswith(prefix) for s in sources), prefix
