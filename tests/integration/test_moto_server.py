"""The local moto server keeps the promises our own tests rely on under concurrency:
no lost Kinesis records, one winner per conditional write, long polls that still work."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import ClientError

from reportgrid import resources as r
from reportgrid.local.bootstrap import RegionResources, client


def _read_all(aws: RegionResources) -> int:
    kinesis = client("kinesis", aws.region, aws.endpoint_url)
    total = 0
    for shard in kinesis.list_shards(StreamName=r.TASK_STREAM_NAME)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=r.TASK_STREAM_NAME,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            total += len(page["Records"])
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    return total


def test_concurrent_put_records_lose_nothing(aws: RegionResources) -> None:
    def burst(worker: int) -> int:
        kinesis = client("kinesis", aws.region, aws.endpoint_url)
        sent = 0
        for batch in range(15):
            reply = kinesis.put_records(
                StreamName=r.TASK_STREAM_NAME,
                Records=[
                    {"Data": f"{worker}-{batch}-{i}".encode(), "PartitionKey": f"{worker}-{i}"}
                    for i in range(50)
                ],
            )
            sent += 50 - reply["FailedRecordCount"]
        return sent

    with ThreadPoolExecutor(8) as pool:
        acknowledged = sum(pool.map(burst, range(8)))
    assert acknowledged == 8 * 15 * 50
    assert _read_all(aws) == acknowledged


def test_racing_conditional_writes_have_one_winner(aws: RegionResources) -> None:
    winners: list[int] = []
    refusals: list[str] = []
    barrier = threading.Barrier(12)

    def claim(worker: int) -> None:
        ddb = client("dynamodb", aws.region, aws.endpoint_url)
        barrier.wait()
        try:
            ddb.put_item(
                TableName=r.TABLE_NAME,
                Item={"pk": {"S": "race"}, "w": {"N": str(worker)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            winners.append(worker)
        except ClientError as err:
            refusals.append(err.response["Error"]["Code"])

    for _ in range(5):
        client("dynamodb", aws.region, aws.endpoint_url).delete_item(
            TableName=r.TABLE_NAME, Key={"pk": {"S": "race"}}
        )
        winners.clear()
        refusals.clear()
        threads = [threading.Thread(target=claim, args=(w,)) for w in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
        assert refusals == ["ConditionalCheckFailedException"] * 11


def test_a_long_poll_waits_without_blocking_other_calls(aws: RegionResources) -> None:
    sqs = client("sqs", aws.region, aws.endpoint_url)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(sqs.receive_message, QueueUrl=aws.heavy_queue_url, WaitTimeSeconds=3)
        time.sleep(0.5)
        # Other calls go through while the poll waits, and the poll gets the message.
        other = client("sqs", aws.region, aws.endpoint_url)
        other.send_message(QueueUrl=aws.heavy_queue_url, MessageBody="hello")
        messages = pending.result(timeout=10).get("Messages", [])
    assert [m["Body"] for m in messages] == ["hello"]
    assert time.monotonic() - started < 2.5


def test_an_empty_long_poll_lasts_its_wait(aws: RegionResources) -> None:
    sqs = client("sqs", aws.region, aws.endpoint_url)
    started = time.monotonic()
    reply = sqs.receive_message(QueueUrl=aws.heavy_queue_url, WaitTimeSeconds=1)
    assert not reply.get("Messages")
    assert 0.9 <= time.monotonic() - started < 3


def test_sequence_numbers_stay_ordered_and_shard_bounds_right(aws: RegionResources) -> None:
    kinesis = client("kinesis", aws.region, aws.endpoint_url)
    numbers = [
        int(
            kinesis.put_record(StreamName=r.TASK_STREAM_NAME, Data=b"x", PartitionKey="same-key")[
                "SequenceNumber"
            ]
        )
        for _ in range(50)
    ]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 50
    shard_id = kinesis.put_record(
        StreamName=r.TASK_STREAM_NAME, Data=b"x", PartitionKey="same-key"
    )["ShardId"]
    shard = next(
        s
        for s in kinesis.list_shards(StreamName=r.TASK_STREAM_NAME)["Shards"]
        if s["ShardId"] == shard_id
    )
    assert int(shard["SequenceNumberRange"]["StartingSequenceNumber"]) <= numbers[0]
