"""The local region's servers and resources are real and match reportgrid.resources."""

from __future__ import annotations

import json

import pytest
import redis

from reportgrid import resources as r
from reportgrid.local.bootstrap import RegionResources, client, create_region
from reportgrid.local.servers import MotoServer, RedisServer, ServerError


def test_every_resource_exists_with_the_shared_schema(aws: RegionResources) -> None:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    table = ddb.describe_table(TableName=r.TABLE_NAME)["Table"]
    assert table["KeySchema"] == [{"AttributeName": r.PARTITION_KEY, "KeyType": "HASH"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == r.TENANT_INDEX_NAME
    assert [k["AttributeName"] for k in index["KeySchema"]] == [
        r.TENANT_INDEX_PARTITION_KEY,
        r.TENANT_INDEX_SORT_KEY,
    ]
    ttl = ddb.describe_time_to_live(TableName=r.TABLE_NAME)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == r.TTL_ATTRIBUTE

    kinesis = client("kinesis", aws.region, aws.endpoint_url)
    summary = kinesis.describe_stream_summary(StreamName=r.TASK_STREAM_NAME)
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2

    sqs = client("sqs", aws.region, aws.endpoint_url)
    attributes = sqs.get_queue_attributes(
        QueueUrl=aws.heavy_queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["deadLetterTargetArn"].endswith(":" + r.HEAVY_DLQ_NAME)
    assert int(policy["maxReceiveCount"]) == r.HEAVY_MAX_RECEIVES

    s3 = client("s3", aws.region, aws.endpoint_url)
    assert s3.get_bucket_versioning(Bucket=aws.results_bucket)["Status"] == "Enabled"


def test_bootstrap_is_idempotent(aws: RegionResources) -> None:
    again = create_region(aws.region, aws.endpoint_url, shards=2)
    assert again == aws


def test_redis_can_be_frozen_and_resumed(tmp_path: object) -> None:
    with RedisServer() as server:
        fast = redis.Redis.from_url(server.url, socket_timeout=0.3)
        assert fast.ping()
        server.pause()
        with pytest.raises(redis.exceptions.TimeoutError):
            fast.ping()
        server.resume()
        assert fast.ping()


def test_a_taken_port_is_a_clear_error(moto_server: MotoServer) -> None:
    with pytest.raises(ServerError, match=f"port {moto_server.port} is already in use"):
        MotoServer(moto_server.port, None)
