"""The events handler on the moto server: terminal writes made by the store, read back from
the table's stream as Lambda would deliver them, put one event each on the bus, which an
SQS-target rule receives; a write stamped by another region (replicated) puts none."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from functions.events import handler as events_handler
from functions.store import ReportStore
from reportgrid import resources as r
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.records import ReportRecord, to_item
from reportgrid.states import State


class _Context:
    function_name = "events"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:events"
    aws_request_id = "test"


def _lambda_records(aws: RegionResources) -> list[dict[str, Any]]:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    streams = client("dynamodbstreams", aws.region, aws.endpoint_url)
    arn = ddb.describe_table(TableName=aws.table_name)["Table"]["LatestStreamArn"]
    found: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        page = streams.get_records(ShardIterator=it, Limit=1000)
        for rec in page["Records"]:
            data = dict(rec["dynamodb"])
            data["ApproximateCreationDateTime"] = data["ApproximateCreationDateTime"].timestamp()
            found.append({**rec, "dynamodb": data})
    return found


def test_one_event_per_terminal_state_written_here(aws: RegionResources) -> None:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    sqs = client("sqs", aws.region, aws.endpoint_url)
    bridge = client("events", aws.region, aws.endpoint_url)
    with contextlib.suppress(bridge.exceptions.ResourceAlreadyExistsException):
        bridge.create_event_bus(Name=r.EVENT_BUS_NAME)  # the bootstrap may have made it
    queue = sqs.create_queue(QueueName="events-subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bridge.put_rule(
        Name="events-test-all",
        EventBusName=r.EVENT_BUS_NAME,
        EventPattern=json.dumps({"source": ["reportgrid"]}),
    )
    bridge.put_targets(
        Rule="events-test-all",
        EventBusName=r.EVENT_BUS_NAME,
        Targets=[{"Id": "q", "Arn": queue_arn}],
    )
    before = len(_lambda_records(aws))
    store = ReportStore(ddb, aws.table_name, region=aws.region)
    for n, state in enumerate((State.SUCCEEDED, State.FAILED, State.CANCELLED)):
        running = ReportRecord(f"rep{n}", "acme", "summary", State.RUNNING, 1, region=aws.region)
        stored = store._put(None, running)
        assert stored is not None
        assert store._put(stored, stored.with_(state=state, ended_ms=2)) is not None
    # A terminal item replicated from the peer: written there, so not published here.
    peer = ReportRecord("rep9", "acme", "summary", State.SUCCEEDED, 1, written_region="eu-west-1")
    ddb.put_item(TableName=aws.table_name, Item=to_item(peer))

    records = _lambda_records(aws)[before:]
    events_handler.configure(
        events_handler.Dependencies(events=bridge, region=aws.region, bus_name=r.EVENT_BUS_NAME)
    )
    try:
        reply = events_handler.handler({"Records": records}, _Context())
    finally:
        events_handler.configure(None)
    assert reply == {"batchItemFailures": []}
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    details = [json.loads(m["Body"])["detail"] for m in got.get("Messages", [])]
    assert sorted(d["report_id"] for d in details) == ["rep0", "rep1", "rep2"]
    assert len({d["event_id"] for d in details}) == 3
    assert {d["state"] for d in details} == {"SUCCEEDED", "FAILED", "CANCELLED"}
