"""Which IAM actions and resources a call needs (reportgrid/local/iam/actions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reportgrid.local.iam.actions import Call, StreamIterators, needs
from reportgrid.local.iam.patterns import Unresolved

ACCOUNT = "123456789012"
REGION = "eu-west-1"


def of(service: str, operation: str, **params: Any) -> list[tuple[str, Any]]:
    found = needs(Call(service, operation, params, REGION, ACCOUNT), StreamIterators())
    assert found is not None
    return [(n.action, n.resource) for n in found]


def test_session_tags_need_tag_session_too() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/reader"
    tagged = of("sts", "AssumeRole", RoleArn=role, Tags=[{"Key": "tenant", "Value": "a"}])
    assert tagged == [("sts:AssumeRole", role), ("sts:TagSession", role)]
    assert of("sts", "AssumeRole", RoleArn=role) == [("sts:AssumeRole", role)]
    found = needs(
        Call(
            "sts",
            "AssumeRole",
            {"RoleArn": role, "Tags": [{"Key": "Tenant", "Value": "a"}]},
            REGION,
            ACCOUNT,
        ),
        StreamIterators(),
    )
    assert found is not None
    assert found[0].context == {"aws:requesttag/tenant": "a", "aws:tagkeys": ("Tenant",)}


def test_delete_objects_needs_a_delete_per_key_and_version() -> None:
    objects = [{"Key": "results/a", "VersionId": "v1"}, {"Key": "results/b"}]
    assert of("s3", "DeleteObjects", Bucket="b", Delete={"Objects": objects}) == [
        ("s3:DeleteObjectVersion", "arn:aws:s3:::b/results/a"),
        ("s3:DeleteObject", "arn:aws:s3:::b/results/b"),
    ]


def test_reads_of_a_version_and_listings() -> None:
    assert of("s3", "GetObject", Bucket="b", Key="k", VersionId="v") == [
        ("s3:GetObjectVersion", "arn:aws:s3:::b/k")
    ]
    assert of("s3", "HeadObject", Bucket="b", Key="k") == [("s3:GetObject", "arn:aws:s3:::b/k")]
    found = needs(
        Call("s3", "ListObjectVersions", {"Bucket": "b", "Prefix": "results/x"}, REGION, ACCOUNT),
        StreamIterators(),
    )
    assert found is not None
    assert (found[0].action, found[0].resource) == ("s3:ListBucketVersions", "arn:aws:s3:::b")
    assert found[0].context == {"s3:prefix": "results/x"}


def test_table_index_and_batch_resources() -> None:
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"
    assert of("dynamodb", "Query", TableName="t", IndexName="i") == [
        ("dynamodb:Query", f"{table}/index/i")
    ]
    assert of("dynamodb", "BatchGetItem", RequestItems={"t": {}, "u": {}}) == [
        ("dynamodb:BatchGetItem", table),
        ("dynamodb:BatchGetItem", table.replace("table/t", "table/u")),
    ]
    assert of(
        "dynamodb",
        "TransactWriteItems",
        TransactItems=[{"ConditionCheck": {"TableName": "t"}}, {"Put": {"TableName": "t"}}],
    ) == [("dynamodb:ConditionCheckItem", table), ("dynamodb:PutItem", table)]


def test_batch_sqs_calls_need_the_single_action() -> None:
    url = f"http://127.0.0.1:5000/{ACCOUNT}/q"
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"
    assert of("sqs", "SendMessageBatch", QueueUrl=url) == [("sqs:SendMessage", arn)]
    assert of("sqs", "DeleteMessageBatch", QueueUrl=url) == [("sqs:DeleteMessage", arn)]
    assert of("sqs", "GetQueueUrl", QueueName="q") == [("sqs:GetQueueUrl", arn)]


def test_get_records_follows_the_iterators_it_was_given() -> None:
    iterators = StreamIterators()
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/s"
    iterators.remember("it", stream)
    call = Call("kinesis", "GetRecords", {"ShardIterator": "it"}, REGION, ACCOUNT)
    found = needs(call, iterators)
    assert found is not None
    assert found[0].resource == stream
    other = needs(Call("kinesis", "GetRecords", {"ShardIterator": "x"}, REGION, ACCOUNT), iterators)
    assert other is not None
    assert isinstance(other[0].resource, Unresolved)


@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("dynamodb", "DeleteTable"),
        ("s3", "ListBuckets"),
        ("sqs", "CreateQueue"),
        ("logs", "PutLogEvents"),
    ],
)
def test_an_unmapped_operation_has_no_needs(service: str, operation: str) -> None:
    assert needs(Call(service, operation, {}, REGION, ACCOUNT), StreamIterators()) is None
