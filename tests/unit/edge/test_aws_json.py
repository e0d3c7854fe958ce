"""The lean AWS JSON client signs exactly as botocore does (the same SigV4 signature for the
same request and time), for both services the edge calls through it, and gives up on a
connect that hangs at the connect timeout."""

from __future__ import annotations

import asyncio
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from grpc_edge import aws_json
from grpc_edge.aws_json import JSON_1_0, JSON_1_1, SigV4
from grpc_edge.idempotency import PUT_ITEM
from grpc_edge.kinesis_writer import TARGET, put_records_body

BODY = put_records_body("reportgrid-tasks", [{"Data": b"R\x01\xff", "PartitionKey": "rpt_a"}])


@pytest.mark.parametrize(
    ("service", "target", "content_type"),
    [("kinesis", TARGET, JSON_1_1), ("dynamodb", PUT_ITEM, JSON_1_0)],
)
@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://service.eu-west-1.amazonaws.com/", "service.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:4566/", "127.0.0.1:4566"),
    ],
)
def test_signature_is_botocores(  # noqa: PLR0917 -- pytest passes the parameters so
    service: str, target: str, content_type: str, token: str | None, url: str, host: str
) -> None:
    amz_date = "20261202T041500Z"
    ours = SigV4("eu-west-1", host, service).headers(
        BODY,
        ReadOnlyCredentials("AKIDEXAMPLE", "secret/key+EXAMPLE", token),  # type: ignore[arg-type]
        amz_date,
        target=target,
        content_type=content_type,
    )
    assert (ours["x-amz-target"], ours["content-type"]) == (target, content_type)
    # botocore signs every header the request carries; give it exactly ours.
    request = AWSRequest(
        method="POST",
        url=url,
        data=BODY,
        headers={k: v for k, v in ours.items() if k != "authorization"},
    )
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+EXAMPLE", token), service, "eu-west-1")
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    assert ours["authorization"].endswith(f"Signature={signature}")
    assert ours["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/eu-west-1/{service}/aws4_request, "
        f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, "
    )


async def test_a_connect_that_hangs_gives_up_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an endpoint whose TCP/TLS connect never completes (an unreachable address)
    async def never(*_: object, **__: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(aws_json, "_CONNECT_TIMEOUT_SECONDS", 0.05)
    monkeypatch.setattr(asyncio, "open_connection", never)
    client = aws_json.AwsJsonClient(
        "https://kinesis.eu-west-1.amazonaws.com",
        "eu-west-1",
        "kinesis",
        None,  # type: ignore[arg-type]
    )

    # Then opening a connection fails at the connect timeout, not the call's 10 s
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client._open(), 1.5)  # a bound for the test itself
    assert time.monotonic() - started < 1.0
