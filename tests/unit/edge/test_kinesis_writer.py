"""The lean PutRecords writer sends the JSON body botocore sends (its signature and
connections: tests/unit/edge/test_aws_json.py)."""

from __future__ import annotations

import base64
import json

from grpc_edge.kinesis_writer import put_records_body

RECORDS = [
    {"Data": b"R\x01\x00\xffbinary", "PartitionKey": "rpt_abc"},
    {"Data": b"", "PartitionKey": 'odd "key"'},
]


def test_body_is_the_json_botocore_sends() -> None:
    sent = json.loads(put_records_body("reportgrid-tasks", RECORDS))
    assert sent == {
        "StreamName": "reportgrid-tasks",
        "Records": [
            {"Data": base64.b64encode(r["Data"]).decode(), "PartitionKey": r["PartitionKey"]}
            for r in RECORDS
        ],
    }
