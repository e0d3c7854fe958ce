"""The queue workers' hot SQS calls on the lean client (functions/lean_aws.py LeanSQS)
answer as boto3's: the request body botocore serializes, the same messages (binary
attributes in bytes), the same ClientError codes (SQS's Query codes, from its
x-amzn-query-error header, as botocore's parser takes them), botocore's retries, and the
local IAM verdict taken per operation and queue by a first call through boto3."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import botocore.session
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.hooks import HierarchicalEmitter

from functions.lean_aws import LeanSQS, lean_sqs
from reportgrid.aws_json_sync import SyncAwsJsonClient
from reportgrid.local.bootstrap import RegionResources, client
from tests.unit.core.aws_server import ScriptedServer, answer

RECEIVE = {
    "QueueUrl": "https://sqs.us-east-1.amazonaws.com/111111111111/q",
    "MaxNumberOfMessages": 2,
    "WaitTimeSeconds": 1,
    "VisibilityTimeout": 30,
    "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
    "MessageAttributeNames": ["All"],
}


def _error(code: str, query: str | None) -> tuple[bytes, str]:
    body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": code}).encode()
    return body, query or ""


def _answer_error(code: str, query: str | None, status: str = "400 Bad Request") -> bytes:
    body, header = _error(code, query)
    reply = answer(body, status=status)
    if header:
        head, _, rest = reply.partition(b"\r\n\r\n")
        reply = head + f"\r\nx-amzn-query-error: {header}".encode() + b"\r\n\r\n" + rest
    return reply


def _lean(url: str, sleeps: list[float] | None = None) -> LeanSQS:
    http = SyncAwsJsonClient(url, "us-east-1", "sqs", Credentials("AK", "SK"))
    record = sleeps if sleeps is not None else []
    return LeanSQS(http, sleep=record.append, jitter=lambda: 0.5)


def _boto3_sqs(url: str) -> Any:
    return botocore.session.get_session().create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="AK",
        aws_secret_access_key="SK",
    )


def test_the_request_is_the_one_boto3_sends() -> None:
    with ScriptedServer(lambda _: answer(b"{}")) as server:
        boto3_sqs = _boto3_sqs(server.url)
        lean = lean_sqs(boto3_sqs)  # type: ignore[arg-type]
        assert lean is not None
        for _ in range(2):  # boto3's call (judging the operation), then the lean client's
            assert "Messages" not in lean.receive_message(**RECEIVE)
    theirs, ours = server.requests
    assert json.loads(ours.body) == json.loads(theirs.body)
    # Signed or not, the headers SQS reads: x-amzn-query-mode asks for Query error codes.
    for name in ("x-amz-target", "content-type", "x-amzn-query-mode"):
        assert ours.header(name) == theirs.header(name), name
    assert ours.header("x-amzn-query-mode") == "true"
    model = botocore.session.get_session().get_service_model("sqs")
    assert model.protocol == "json"  # botocore calls SQS on the JSON protocol, as we do


def test_a_refusal_is_boto3s_modelled_exception() -> None:
    gone = _answer_error("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue;Sender")
    with ScriptedServer(lambda _: gone) as server:
        boto3_sqs = _boto3_sqs(server.url)
        lean = LeanSQS(_lean(server.url).http, first_via=boto3_sqs)
        lean._judge(("DeleteMessage", RECEIVE["QueueUrl"]))  # the lean client's own answer
        with pytest.raises(boto3_sqs.exceptions.QueueDoesNotExist) as caught:
            lean.delete_message(QueueUrl=RECEIVE["QueueUrl"], ReceiptHandle="h")
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


def test_the_query_code_is_the_errors_code_as_botocore_parses_it() -> None:
    refused = _answer_error("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid;Sender")
    with ScriptedServer(lambda _: refused) as server, pytest.raises(ClientError) as caught:
        _lean(server.url).delete_message(QueueUrl=RECEIVE["QueueUrl"], ReceiptHandle="h")
    assert len(server.requests) == 1  # a refusal: not retried
    error = caught.value.response["Error"]
    assert error == {
        "Code": "ReceiptHandleIsInvalid",
        "Message": "ReceiptHandleIsInvalid",
        "QueryErrorCode": "ReceiptHandleIsInvalid",
        "Type": "Sender",
    }
    queue_gone = _answer_error(
        "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue;Sender"
    )
    with ScriptedServer(lambda _: queue_gone) as server, pytest.raises(ClientError) as caught:
        _lean(server.url).receive_message(**RECEIVE)
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert caught.value.response["Error"]["QueryErrorCode"] == "QueueDoesNotExist"


@pytest.mark.parametrize(
    ("code", "query", "status"),
    [
        ("RequestThrottled", "RequestThrottled;Sender", "400 Bad Request"),
        ("ThrottlingException", "ThrottlingException;Sender", "400 Bad Request"),
        ("InternalError", None, "500 Internal Server Error"),
    ],
)
def test_throttling_and_5xx_are_retried_with_botocores_backoff(
    code: str, query: str | None, status: str
) -> None:
    replies = iter([_answer_error(code, query, status)] * 2 + [answer(b"{}")])
    sleeps: list[float] = []
    with ScriptedServer(lambda _: next(replies)) as server:
        assert (
            _lean(server.url, sleeps).change_message_visibility(
                QueueUrl=RECEIVE["QueueUrl"], ReceiptHandle="h", VisibilityTimeout=0
            )
            == {}
        )
    assert len(server.requests) == 3
    assert sleeps == [0.5 * 1, 0.5 * 2]


def test_no_answer_is_retried_then_a_connection_error() -> None:
    with ScriptedServer(lambda _: None) as server, pytest.raises(ConnectionError):
        _lean(server.url).receive_message(**RECEIVE)
    assert len(server.requests) == 3


class _Boto3:
    """The boto3 client's stand-in: the local IAM emulation's verdict per call."""

    meta = SimpleNamespace(events=HierarchicalEmitter())  # where lean calls are announced

    def __init__(self, verdicts: list[str]) -> None:
        self.verdicts = verdicts
        self.queues: list[str] = []

    def delete_message(self, **request: Any) -> Any:
        self.queues.append(request["QueueUrl"])
        if code := self.verdicts.pop(0):
            raise ClientError({"Error": {"Code": code, "Message": code}}, "DeleteMessage")
        return {}


def test_each_queue_is_judged_by_a_first_call_through_boto3() -> None:
    boto3_ = _Boto3(["AccessDenied", "", ""])
    other = RECEIVE["QueueUrl"] + "-dlq"
    with ScriptedServer(lambda _: answer(b"{}")) as server:
        lean = LeanSQS(_lean(server.url).http, first_via=boto3_)
        with pytest.raises(ClientError):  # denied (IAM): judged again next time
            lean.delete_message(QueueUrl=RECEIVE["QueueUrl"], ReceiptHandle="h")
        for queue in (RECEIVE["QueueUrl"], RECEIVE["QueueUrl"], other, other):
            assert lean.delete_message(QueueUrl=queue, ReceiptHandle="h") == {}
    # Allowed once on each queue, then the lean client: a grant is per queue.
    assert boto3_.queues == [RECEIVE["QueueUrl"], RECEIVE["QueueUrl"], other]
    assert len(server.requests) == 2


# --- against the moto server, next to boto3 -------------------------------------------


def _sent(sqs: Any, url: str) -> None:
    sqs.send_message(
        QueueUrl=url,
        MessageBody="a task",
        MessageAttributes={
            "deferrals": {"DataType": "Number", "StringValue": "2"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
        },
    )


def test_a_message_reads_as_boto3_reads_it_and_is_deleted(aws: RegionResources) -> None:
    sqs = client("sqs", aws.region, aws.endpoint_url)
    url = sqs.create_queue(QueueName=f"lean-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    _sent(sqs, url)
    lean = lean_sqs(sqs)
    assert lean is not None
    request = {**RECEIVE, "QueueUrl": url, "WaitTimeSeconds": 0}
    # Judged by boto3's call first, then the lean client's own.
    first = lean.receive_message(**request)["Messages"][0]
    lean.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    assert lean.http.calls == 0
    ours = lean.receive_message(**request)["Messages"][0]
    lean.change_message_visibility(
        QueueUrl=url, ReceiptHandle=ours["ReceiptHandle"], VisibilityTimeout=0
    )
    assert lean.http.calls == 2
    theirs = dict(sqs.receive_message(**request)["Messages"][0])  # type: ignore[arg-type]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=theirs["ReceiptHandle"], VisibilityTimeout=0
    )
    for message in (ours, theirs):
        message.pop("ReceiptHandle")
        message["Attributes"].pop("ApproximateReceiveCount")
    assert ours == theirs
    assert ours["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\xff"
    # Deleted through the lean client; a queue that is not there is refused alike.
    handle = lean.receive_message(**request)["Messages"][0]["ReceiptHandle"]
    lean.delete_message(QueueUrl=url, ReceiptHandle=handle)  # boto3's, judging DeleteMessage
    _sent(sqs, url)
    handle = lean.receive_message(**request)["Messages"][0]["ReceiptHandle"]
    assert lean.delete_message(QueueUrl=url, ReceiptHandle=handle) == {}
    assert lean.http.calls_by_target["AmazonSQS.DeleteMessage"] == 1
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    errors = []
    for caller in (sqs, LeanSQS(lean.http)):  # the lean client's own answer, not judged
        with pytest.raises(ClientError) as caught:
            caller.delete_message(QueueUrl=url + "-missing", ReceiptHandle=handle)
        errors.append(caught.value.response["Error"]["Code"])
    assert errors[0] == errors[1] == "AWS.SimpleQueueService.NonExistentQueue"
