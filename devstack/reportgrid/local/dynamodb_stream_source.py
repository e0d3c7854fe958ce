"""The local DynamoDB-stream event source: reads a table's stream in the moto server
(DescribeStream / GetShardIterator / GetRecords of dynamodbstreams) and invokes a function
with Lambda's DynamoDB event, under the same delivery rules as the Kinesis event source
(reportgrid/local/kinesis_runner.py, whose shard loop, retries, bisection, partial batch
responses and on-failure destination it shares by subclassing).

What differs from Kinesis, as Lambda does it:
- a record is a DynamoDB stream record (eventID, eventName, eventSource "aws:dynamodb",
  awsRegion, dynamodb{...}, eventSourceARN; docs.aws.amazon.com/lambda/latest/dg/
  with-ddb.html, "Example event");
- the mapping's FilterCriteria drop records before batching: a record that matches none
  of the patterns is never delivered and counts as processed (invocation-eventfiltering.html;
  for DynamoDB the pattern is matched against the whole record, so patterns name the
  `dynamodb` key). The patterns are EventBridge patterns: moto's EventPattern matches them;
- the on-failure record carries DDBStreamBatchInfo (with-ddb.html, "Configuring
  destinations for failed invocations").
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast

from moto.events.models import EventPattern

from reportgrid.local.bootstrap import client
from reportgrid.local.kinesis_runner import (
    Handler,
    KinesisRunner,
    MappingConfig,
    StreamRecord,
)

CHECKPOINT_DIR: Final = "dynamodb-stream"


@dataclass(frozen=True, slots=True)
class DynamoStreamRecord(StreamRecord):
    """One DynamoDB stream record, as GetRecords returned it (`raw`)."""

    raw: dict[str, Any]


def _epoch(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float | Decimal):
        return float(value)
    return datetime.now(UTC).timestamp()


def _json_shaped(value: Any) -> Any:
    """boto3's parse of a stream record as the JSON Lambda sends: a binary attribute (B, BS)
    as base64 text, a time as epoch seconds."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime | Decimal):
        return _epoch(value)
    if isinstance(value, dict):
        return {k: _json_shaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_shaped(v) for v in value]
    return value


def lambda_ddb_record(
    record: DynamoStreamRecord, *, stream_arn: str, region: str
) -> dict[str, Any]:
    """A record of a Lambda DynamoDB event: the stream record, with the event source's ARN
    and the approximate creation time as epoch seconds (as the service sends it)."""
    raw = record.raw
    data = _json_shaped(dict(raw.get("dynamodb", {})))
    data["ApproximateCreationDateTime"] = _epoch(data.get("ApproximateCreationDateTime"))
    return {
        "eventID": str(raw.get("eventID", record.sequence_number)),
        "eventName": str(raw.get("eventName", "")),
        "eventVersion": str(raw.get("eventVersion", "1.1")),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": data,
        "eventSourceARN": stream_arn,
    }


class DynamoStreamRunner(KinesisRunner):
    """Polls every shard of a table's stream and feeds the handler, as Lambda does."""

    BATCH_INFO = "DDBStreamBatchInfo"

    def __init__(
        self,
        handler: Handler,
        *,
        table_name: str,
        region: str,
        endpoint_url: str,
        config: MappingConfig | None = None,
        state_dir: Path | None = None,
        function_name: str,
        filter_patterns: Sequence[str] = (),
        failure_queue_url: str | None = None,
    ) -> None:
        self._streams = client("dynamodbstreams", region, endpoint_url)
        self._dynamodb = client("dynamodb", region, endpoint_url)
        self.table_name = table_name
        self.patterns = [EventPattern.load(p) for p in filter_patterns]
        self.filtered = 0
        super().__init__(
            handler,
            stream_name=table_name,
            region=region,
            endpoint_url=endpoint_url,
            config=config,
            state_dir=state_dir,
            function_name=function_name,
            kinesis=object(),  # never used: every stream call below is dynamodbstreams
            failure_queue_url=failure_queue_url,
        )

    def _describe(self, stream_name: str) -> tuple[str, str]:
        table = self._dynamodb.describe_table(TableName=stream_name)["Table"]
        if "LatestStreamArn" not in table:
            raise RuntimeError(f"table {stream_name} has no stream enabled")
        # A stream ARN ends with its creation label: a new stream is a new ARN.
        arn = str(table["LatestStreamArn"])
        return arn, arn.rsplit("/", 1)[-1]

    def shard_ids(self) -> list[str]:
        desc = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return [str(s["ShardId"]) for s in desc["Shards"]]

    def _iterator(self, shard_id: str, after: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if after is not None:
            kwargs |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        else:
            kwargs["ShardIteratorType"] = self.config.starting_position
        return str(self._streams.get_shard_iterator(**kwargs)["ShardIterator"])

    def passes(self, record: dict[str, Any]) -> bool:
        """Whether the mapping's filter lets the record (as the function would get it)
        through; no filter lets every one through."""
        if not self.patterns:
            return True
        return any(p.matches_event(cast(Any, record)) for p in self.patterns)

    def _read(self, shard_id: str, iterator: str, limit: int) -> tuple[list[StreamRecord], str]:
        reply = self._streams.get_records(ShardIterator=iterator, Limit=limit)
        records: list[StreamRecord] = []
        for raw in reply["Records"]:
            data = raw.get("dynamodb", {})
            record = DynamoStreamRecord(
                shard_id=shard_id,
                sequence_number=str(data["SequenceNumber"]),
                partition_key="",
                data=b"",
                arrival=datetime.fromtimestamp(
                    _epoch(data.get("ApproximateCreationDateTime")), UTC
                ),
                raw=raw,
            )
            shaped = lambda_ddb_record(record, stream_arn=self.stream_arn, region=self.region)
            if not self.passes(shaped):
                self.filtered += 1
                continue
            records.append(record)
        return records, reply.get("NextShardIterator") or ""

    def lambda_event(self, batch: Sequence[StreamRecord]) -> dict[str, Any]:
        return {
            "Records": [
                lambda_ddb_record(
                    cast(DynamoStreamRecord, r), stream_arn=self.stream_arn, region=self.region
                )
                for r in batch
            ]
        }
