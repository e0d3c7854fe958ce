"""Reading policies from a template (reportgrid/local/iam/resolve.py, template.py):
intrinsics resolved to the local region's ARNs, the deployed account made local, the
unresolvable kept unresolved, and the roles, components, resource policies and keys found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reportgrid.local.bootstrap import LOCAL_ACCOUNT, LOCAL_INPUT_READER_ROLE
from reportgrid.local.iam.patterns import Unresolved
from reportgrid.local.iam.resolve import (
    Localization,
    Stack,
    StackResolver,
    TemplateError,
    load_stacks,
    queue_arn_from_url,
)
from reportgrid.local.iam.template import aws_managed_policy, build_model

DEPLOYED = "111111111111"
REGION = "eu-west-1"


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{name}"


def partition_join(*parts: Any) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, *parts]]}


TEMPLATE: dict[str, Any] = {
    "Parameters": {"Stage": {"Type": "String", "Default": "prod"}},
    "Resources": {
        "Queue1": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "jobs"}},
        "Stream1": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "tasks"}},
        "Bucket1": {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "BucketName": f"results-{DEPLOYED}-{REGION}",
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": "alias/results",
                            }
                        }
                    ]
                },
            },
        },
        "Key1": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": []}}},
        "Alias1": {
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": "alias/results", "TargetKeyId": {"Ref": "Key1"}},
        },
        "Generated": {"Type": "AWS::SNS::Topic", "Properties": {}},
        "WorkerRole1": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Statement": []},
                "ManagedPolicyArns": [
                    partition_join(":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"),
                    "arn:aws:iam::aws:policy/NoSuchPolicy",
                ],
                "Policies": [
                    {
                        "PolicyName": "inline",
                        "PolicyDocument": {
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": "sns:Publish",
                                    "Resource": {"Ref": "Generated"},
                                }
                            ]
                        },
                    }
                ],
                "Tags": [{"Key": "project", "Value": "reportgrid"}],
            },
        },
        "InputReaderRoleABC": {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": {"Statement": []}},
        },
        "WorkerPolicy1": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "Roles": [{"Ref": "WorkerRole1"}],
                "PolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["Queue1", "Arn"]},
                        },
                        {
                            "Effect": "Allow",
                            "Action": "dynamodb:PutItem",
                            "Resource": partition_join(
                                f":dynamodb:{REGION}:{DEPLOYED}:table/reports"
                            ),
                        },
                    ]
                },
            },
        },
        "Function1": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Handler": "functions.worker.handler.handler",
                "Role": {"Fn::GetAtt": ["WorkerRole1", "Arn"]},
            },
        },
        "Task1": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "TaskRoleArn": {"Fn::GetAtt": ["WorkerRole1", "Arn"]},
                "ContainerDefinitions": [{"Name": "worker"}],
            },
        },
        "QueuePolicy1": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "Queue1"}],
                "PolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Deny",
                            "Principal": {"AWS": "*"},
                            "Action": "sqs:*",
                            "Resource": {"Fn::GetAtt": ["Queue1", "Arn"]},
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ]
                },
            },
        },
    },
    "Outputs": {
        "Exported": {"Value": {"Ref": "Stream1"}, "Export": {"Name": "stream-name"}},
    },
}


def resolver(**local: Any) -> StackResolver:
    stack = Stack("Reportgrid-eu-west-1", TEMPLATE, REGION, DEPLOYED)
    return StackResolver(stack, Localization(region=REGION, **local), Unresolved)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Fn::GetAtt": ["Queue1", "Arn"]}, f"arn:aws:sqs:{REGION}:{LOCAL_ACCOUNT}:jobs"),
        ({"Fn::GetAtt": "Stream1.Arn"}, f"arn:aws:kinesis:{REGION}:{LOCAL_ACCOUNT}:stream/tasks"),
        ({"Ref": "Bucket1"}, f"results-{LOCAL_ACCOUNT}-{REGION}"),
        (
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket1}/*"},
            f"arn:aws:s3:::results-{LOCAL_ACCOUNT}-{REGION}/*",
        ),
        (
            {"Fn::Sub": ["${X}-${!Literal}", {"X": {"Ref": "AWS::Region"}}]},
            f"{REGION}-${{Literal}}",
        ),
        ({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, "b"),
        (
            {"Fn::Join": [":", [{"Ref": "AWS::AccountId"}, {"Ref": "Stage"}]]},
            f"{LOCAL_ACCOUNT}:prod",
        ),
        ({"Fn::GetAtt": ["InputReaderRoleABC", "Arn"]}, role_arn(LOCAL_INPUT_READER_ROLE)),
        ({"Fn::GetAtt": ["WorkerRole1", "Arn"]}, role_arn("WorkerRole1")),
        # Literal text in the deployed account becomes the local account's
        (f"arn:aws:sqs:us-east-1:{DEPLOYED}:peer", f"arn:aws:sqs:us-east-1:{LOCAL_ACCOUNT}:peer"),
    ],
)
def test_intrinsics_resolve_to_local_values(value: Any, expected: str) -> None:
    assert resolver().resolve(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"Ref": "Generated"},  # no TopicName: CloudFormation generates it
        {"Fn::GetAtt": ["Key1", "Arn"]},  # a key id exists only once created
        {"Fn::Join": ["", ["x", {"Ref": "Nothing"}]]},
        {"Fn::If": ["Cond", "a", "b"]},
    ],
)
def test_what_has_no_local_counterpart_stays_unresolved(value: Any) -> None:
    assert isinstance(resolver().resolve(value), Unresolved)


def test_physical_values_and_renames_fill_in() -> None:
    local = resolver(
        physical={"Generated": "arn:aws:sns:eu-west-1:123456789012:alarms"},
        renames={"results-": "local-results-"},
    )
    assert local.resolve({"Ref": "Generated"}) == "arn:aws:sns:eu-west-1:123456789012:alarms"
    assert local.resolve({"Ref": "Bucket1"}) == f"local-results-{LOCAL_ACCOUNT}-{REGION}"


def model() -> Any:
    stacks = [
        Stack("Reportgrid-eu-west-1", TEMPLATE, REGION, DEPLOYED),
        Stack("Reportgrid-us-east-1", {"Resources": {}}, "us-east-1", DEPLOYED),
    ]
    return build_model(stacks, Localization(region=REGION))


def test_a_roles_policies_are_gathered_from_every_attachment() -> None:
    role = model().role(function="functions.worker.handler:handler")
    assert role.arn == role_arn("WorkerRole1")
    actions = [a for s in role.statements for a in s.actions]
    # AWS::IAM::Policy, the AWS managed policy (moto's copy), the inline policy
    assert "sqs:SendMessage" in actions
    assert "dynamodb:PutItem" in actions
    assert "logs:PutLogEvents" in actions
    assert "sns:Publish" in actions
    (table,) = (s.resources for s in role.statements if "dynamodb:PutItem" in s.actions)
    assert table == (f"arn:aws:dynamodb:{REGION}:{LOCAL_ACCOUNT}:table/reports",)
    (topic,) = (s.resources for s in role.statements if "sns:Publish" in s.actions)
    assert isinstance(topic[0], Unresolved)
    assert role.tags == {"project": "reportgrid"}


def test_components_are_found_by_container_function_or_role_prefix() -> None:
    found = model()
    assert found.role(container="worker") == found.role(logical_id="WorkerRole")
    with pytest.raises(TemplateError, match="no ECS container named edge"):
        found.role(container="edge")


def test_resource_policies_and_keys_are_attached_to_local_arns() -> None:
    found = model()
    queue = f"arn:aws:sqs:{REGION}:{LOCAL_ACCOUNT}:jobs"
    policy = found.resource_policy(queue, "sqs:SendMessage")
    assert policy is not None
    assert [s.effect for s in policy.statements] == ["Deny"]
    # The bucket's CMK, found through its alias; unknown locally until created
    key = found.key_of(f"arn:aws:s3:::results-{LOCAL_ACCOUNT}-{REGION}/results/x")
    assert isinstance(key, Unresolved)
    # A role's trust policy is required for assuming it, even for unknown roles
    assert found.resource_policy(role_arn("nobody"), "sts:AssumeRole").required


def test_an_aws_managed_policy_needs_its_path_and_name() -> None:
    assert aws_managed_policy("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    assert aws_managed_policy("arn:aws:iam::aws:policy/AWSLambdaBasicExecutionRole") is None


def test_a_cloud_assembly_is_read_through_its_manifest(tmp_path: Path) -> None:
    (tmp_path / "S.template.json").write_text(json.dumps(TEMPLATE))
    manifest = {
        "artifacts": {
            "S": {
                "type": "aws:cloudformation:stack",
                "environment": f"aws://{DEPLOYED}/{REGION}",
                "properties": {"templateFile": "S.template.json"},
            }
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (stack,) = load_stacks(tmp_path)
    assert (stack.name, stack.region, stack.account) == ("S", REGION, DEPLOYED)


@pytest.mark.parametrize(
    ("url", "arn"),
    [
        ("http://127.0.0.1:5000/123456789012/jobs", "arn:aws:sqs:eu-west-1:123456789012:jobs"),
        (
            "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
            "arn:aws:sqs:us-east-1:123456789012:jobs",
        ),
        ("http://127.0.0.1:5000/jobs", None),
    ],
)
def test_queue_urls_become_arns(url: str, arn: str | None) -> None:
    assert queue_arn_from_url(url, REGION) == arn
