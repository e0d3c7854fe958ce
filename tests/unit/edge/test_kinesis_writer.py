"""The lean PutRecords writer signs and serializes exactly as botocore does: the same
SigV4 signature for the same request and time, the same JSON body."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from grpc_edge import kinesis_writer
from grpc_edge.kinesis_writer import SigV4, put_records_body

RECORDS = [
    {"Data": b"R\x01\x00\xffbinary", "PartitionKey": "rpt_abc"},
    {"Data": b"", "PartitionKey": 'odd "key"'},
]


@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://kinesis.eu-west-1.amazonaws.com/", "kinesis.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:4566/", "127.0.0.1:4566"),
    ],
)
def test_signature_is_botocores(token: str | None, url: str, host: str) -> None:
    body = put_records_body("reportgrid-tasks", RECORDS)
    amz_date = "20261202T041500Z"
    ours = SigV4("eu-west-1", host).headers(
        body, ReadOnlyCredentials("AKIDEXAMPLE", "secret/key+EXAMPLE", token), amz_date
    )
    # botocore signs every header the request carries; give it exactly ours.
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={k: v for k, v in ours.items() if k != "authorization"},
    )
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(
        Credentials("AKIDEXAMPLE", "secret/key+EXAMPLE", token), "kinesis", "eu-west-1"
    )
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    assert ours["authorization"].endswith(f"Signature={signature}")
    assert ours["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/eu-west-1/kinesis/aws4_request, "
        f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, "
    )


def test_body_is_the_json_botocore_sends() -> None:
    sent = json.loads(put_records_body("reportgrid-tasks", RECORDS))
    assert sent == {
        "StreamName": "reportgrid-tasks",
        "Records": [
            {"Data": base64.b64encode(r["Data"]).decode(), "PartitionKey": r["PartitionKey"]}
            for r in RECORDS
        ],
    }


async def test_a_connect_that_hangs_gives_up_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an endpoint whose TCP/TLS connect never completes (an unreachable address)
    async def never(*_: object, **__: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(kinesis_writer, "_CONNECT_TIMEOUT_SECONDS", 0.05)
    monkeypatch.setattr(asyncio, "open_connection", never)
    writer = kinesis_writer.KinesisWriter(
        "https://kinesis.eu-west-1.amazonaws.com", "eu-west-1", None
    )  # type: ignore[arg-type]

    # Then opening a connection fails at the connect timeout, not the call's 10 s
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(writer._open(), 1.5)  # a bound for the test itself
    assert time.monotonic() - started < 1.0
