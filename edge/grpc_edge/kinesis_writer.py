"""PutRecords without botocore's per-call machinery: the producer's one hot AWS call, built
by hand (the JSON body as text) and sent through grpc_edge/aws_json.py (SigV4, kept-alive
connections; why: that module's docstring).

The edge's other Kinesis calls (DescribeStreamSummary for health) still go through the
aiobotocore client. tests/unit/edge/test_kinesis_writer.py checks the body against what
botocore sends, tests/unit/edge/test_aws_json.py the signature.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Final, Protocol

from grpc_edge.aws_json import JSON_1_1, AwsJsonClient, CredentialSource, error_of

TARGET: Final = "Kinesis_20131202.PutRecords"
CONTENT_TYPE: Final = JSON_1_1
_SERVICE: Final = "kinesis"


class PutRecordsCaller(Protocol):
    async def put_records(self, *, StreamName: str, Records: Sequence[Any]) -> Any: ...


class KinesisCallError(Exception):
    """The whole PutRecords call failed (HTTP status other than 200): every record of it
    is retried by the producer."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"PutRecords failed: HTTP {status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type


def put_records_body(stream_name: str, records: Sequence[dict[str, Any]]) -> bytes:
    """The JSON the Kinesis API takes (Data as base64), built as text: the producer builds
    every record itself, so there is nothing to validate."""
    items = ",".join(
        '{"Data":"'
        + base64.b64encode(r["Data"]).decode("ascii")
        + '","PartitionKey":'
        + json.dumps(r["PartitionKey"])
        + "}"
        for r in records
    )
    return ('{"StreamName":' + json.dumps(stream_name) + ',"Records":[' + items + "]}").encode()


class KinesisWriter:
    """`put_records(StreamName=..., Records=[...])` with the aiobotocore client's call shape
    and answer, so the producer (and tests' fault-injecting wrappers) treat both alike."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        *,
        first_via: PutRecordsCaller | None = None,
    ) -> None:
        # Calls go through `first_via` (the aiobotocore client) until one succeeds. AWS
        # judges every signed request itself, but the local region's IAM emulation is a
        # botocore hook (reportgrid/local/iam/hook.py) that this writer never passes: a
        # first call through botocore gets the same verdict, and with it denied every
        # call stays on botocore, so a missing grant fails locally as it would in AWS.
        self._first_via = first_via
        self._http = AwsJsonClient(endpoint_url, region, _SERVICE, credentials)

    @property
    def connections_opened(self) -> int:
        return self._http.connections_opened

    async def put_records(self, *, StreamName: str, Records: Sequence[dict[str, Any]]) -> Any:
        if self._first_via is not None:
            answer = await self._first_via.put_records(StreamName=StreamName, Records=Records)
            self._first_via = None
            return answer
        status, answer = await self._http.call(
            TARGET, CONTENT_TYPE, put_records_body(StreamName, Records)
        )
        if status != 200:
            error_type, message, _ = error_of(answer)
            raise KinesisCallError(status, error_type, message)
        return json.loads(answer)

    async def close(self) -> None:
        await self._http.close()
