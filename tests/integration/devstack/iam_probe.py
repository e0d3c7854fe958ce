"""Run by test_iam_enforce.py under `python -m reportgrid.local.iam.enforce ... -- -m
tests.integration.devstack.iam_probe <endpoint> <region> <queue url> <extra...>`: one call
the edge's role allows, one it does not; prints what happened (and its argv) as JSON."""

from __future__ import annotations

import json
import sys

import boto3
from botocore.exceptions import ClientError

from reportgrid import resources


def main() -> None:
    endpoint, region, queue_url = sys.argv[1:4]
    session = boto3.session.Session()
    ddb = session.client("dynamodb", region_name=region, endpoint_url=endpoint)
    sqs = session.client("sqs", region_name=region, endpoint_url=endpoint)
    ddb.put_item(TableName=resources.TABLE_NAME, Item={"pk": {"S": "probe#1"}})
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody="from the edge")
        sent = "sent"
    except ClientError as err:
        sent = err.response["Error"]["Code"]
    print(json.dumps({"argv": sys.argv, "name": __name__, "send_message": sent}))


if __name__ == "__main__":
    main()
