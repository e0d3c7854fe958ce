"""The report store's writes on the lean PutItem (functions/clients.py LeanDynamoDB) answer
as on boto3: the same request body as botocore serializes, botocore's standard retries
(3 attempts, its backoff), the same ClientError codes and statuses (so the store's own
mapping, functions/store.py is_transient, sees what it sees from boto3), and the local
IAM verdict taken by a first call through boto3. Then the store itself on it, against the
moto server through a socket proxy: a run's writes, a throttled write within and beyond
the budget, a reply lost after the write committed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.hooks import HierarchicalEmitter
from botocore.serialize import create_serializer

from functions.lean_aws import LeanDynamoDB, lean_dynamodb
from functions.store import WRITE_ATTEMPTS, Claim, ReportStore, is_transient, store_for
from reportgrid import intents, resources
from reportgrid.aws_json_sync import SyncAwsJsonClient
from reportgrid.errors import Unavailable
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.local.iam.enforce import build_enforcer
from reportgrid.local.iam.hook import enforced
from reportgrid.settings import Settings
from reportgrid.states import State
from tests.conftest import Synthesized
from tests.integration.workers.conftest import make_task
from tests.unit.core.aws_server import Request, ScriptedServer, answer, forward

STREAM_WORKER = "functions.stream_worker.handler.handler"
PUT = {
    "TableName": "reports",
    "Item": {
        "pk": {"S": "rpt_1"},
        "n": {"N": "7"},
        "spec": {"B": b"\x00\xffspec"},
        "labels": {"M": {"a": {"S": "b"}}},
        "cancel": {"BOOL": False},
        "blobs": {"BS": [b"x", b"y"]},
    },
    "ConditionExpression": "#rev = :rev",
    "ExpressionAttributeNames": {"#rev": "revision"},
    "ExpressionAttributeValues": {":rev": {"N": "3"}},
}


def _error(code: str) -> bytes:
    return json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}
    ).encode()


def _lean(server: ScriptedServer, sleeps: list[float] | None = None) -> LeanDynamoDB:
    http = SyncAwsJsonClient(server.url, "us-east-1", "dynamodb", Credentials("AK", "SK"))
    record = sleeps if sleeps is not None else []
    return LeanDynamoDB(http, sleep=record.append, jitter=lambda: 0.5)


def test_the_request_body_is_the_one_botocore_serializes() -> None:
    with ScriptedServer(lambda _: answer(b"{}")) as server:
        assert _lean(server).put_item(**PUT) == {}
    model = botocore.session.get_session().get_service_model("dynamodb").operation_model("PutItem")
    theirs = create_serializer("json").serialize_to_request(PUT, model)
    assert json.loads(server.requests[0].body) == json.loads(theirs["body"])
    assert server.requests[0].header("x-amz-target") == theirs["headers"]["X-Amz-Target"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", "400 Bad Request"),
        ("ThrottlingException", "400 Bad Request"),
        ("InternalServerError", "500 Internal Server Error"),
    ],
)
def test_throttling_and_5xx_are_retried_with_botocores_backoff(code: str, status: str) -> None:
    replies = iter([answer(_error(code), status=status)] * 2 + [answer(b"{}")])
    sleeps: list[float] = []
    with ScriptedServer(lambda _: next(replies)) as server:
        assert _lean(server, sleeps).put_item(**PUT) == {}
    assert len(server.requests) == 3
    assert sleeps == [0.5 * 1, 0.5 * 2]  # rand(0, 1) x 2^(attempt - 1), as botocore


def test_throttled_on_every_attempt_is_botocores_client_error() -> None:
    throttled = answer(_error("ProvisionedThroughputExceededException"), status="400 Bad Request")
    with ScriptedServer(lambda _: throttled) as server, pytest.raises(ClientError) as caught:
        _lean(server).put_item(**PUT)
    assert len(server.requests) == 3
    error = caught.value.response
    assert error["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert is_transient(caught.value)  # the store retries it, as boto3's


@pytest.mark.parametrize("code", ["ConditionalCheckFailedException", "ValidationException"])
def test_a_refusal_is_not_retried(code: str) -> None:
    refused = answer(_error(code), status="400 Bad Request")
    with ScriptedServer(lambda _: refused) as server, pytest.raises(ClientError) as caught:
        _lean(server).put_item(**PUT)
    assert len(server.requests) == 1
    assert caught.value.response["Error"]["Code"] == code
    assert not is_transient(caught.value)


def test_no_answer_is_retried_then_a_connection_error() -> None:
    with ScriptedServer(lambda _: None) as server, pytest.raises(ConnectionError):
        _lean(server).put_item(**PUT)
    assert len(server.requests) == 3


def test_a_read_answered_200_with_no_json_is_a_connection_error_and_empty_is_empty() -> None:
    get = {"TableName": "reports", "Key": {"pk": {"S": "rpt_1"}}}
    html = answer(b"<html>proxy</html>")
    with ScriptedServer(lambda _: html) as server, pytest.raises(ConnectionError, match="JSON"):
        _lean(server).get_item(**get)
    with ScriptedServer(lambda _: answer(b"")) as server:
        assert _lean(server).get_item(**get) == {}


class _Boto3:
    """The boto3 client's stand-in: the local IAM emulation's verdict, then DynamoDB's."""

    meta = SimpleNamespace(events=HierarchicalEmitter())  # where lean calls are announced

    def __init__(self, verdicts: list[str]) -> None:
        self.verdicts = verdicts
        self.calls = 0

    def put_item(self, **_: Any) -> Any:
        self.calls += 1
        code = self.verdicts.pop(0)
        if code:
            raise ClientError({"Error": {"Code": code, "Message": code}}, "PutItem")
        return {}


def test_calls_stay_on_boto3_until_one_got_dynamodbs_answer() -> None:
    boto3_ = _Boto3(["AccessDeniedException", "ConditionalCheckFailedException"])
    with ScriptedServer(lambda _: answer(b"{}")) as server:
        lean = _lean(server)
        lean = LeanDynamoDB(lean.http, first_via=boto3_)  # type: ignore[arg-type]
        for _ in range(2):  # denied (IAM): the next call is judged again
            with pytest.raises(ClientError):
                lean.put_item(**PUT)
        assert lean.put_item(**PUT) == {}  # judged: the lean client from now on
    assert boto3_.calls == 2
    assert len(server.requests) == 1


# --- the store on the lean client, against the moto server -----------------------------


class _Proxy:
    """Forwards to the moto server; answers the next `throttle` PutItems with throttling
    instead, and drops the reply of a write that commits when `drop_next` is set."""

    def __init__(self, moto_port: int) -> None:
        self.throttle = 0
        self.drop_next = False
        self.dropped = 0
        self._moto = moto_port
        self._lock = threading.Lock()
        self.server = ScriptedServer(self._answer)

    def _answer(self, request: Request) -> bytes | None:
        if not request.header("x-amz-target").endswith(".PutItem"):
            return forward(self._moto, request)
        with self._lock:
            if self.throttle:
                self.throttle -= 1
                return answer(
                    _error("ProvisionedThroughputExceededException"), status="400 Bad Request"
                )
            drop, self.drop_next = self.drop_next, False
        reply = forward(self._moto, request)
        if drop and reply.startswith(b"HTTP/1.1 200"):
            self.dropped += 1
            return None  # committed on the server; the caller never hears of it
        return reply


@pytest.fixture
def proxy(aws: RegionResources) -> Iterator[_Proxy]:
    running = _Proxy(int(aws.endpoint_url.rsplit(":", 1)[1].rstrip("/")))
    with running.server:
        yield running


def _store(settings: Settings, aws: RegionResources, proxy: _Proxy) -> ReportStore:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    http = SyncAwsJsonClient(proxy.server.url, aws.region, "dynamodb", Credentials("AK", "SK"))
    # Judged already (no first call through boto3): every write goes through the proxy.
    lean = LeanDynamoDB(http, sleep=lambda _: None)
    return ReportStore(ddb, settings.table_name, lean=lean)


def test_the_deployed_store_writes_through_the_lean_client(
    settings: Settings, aws: RegionResources
) -> None:
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    store = store_for(settings, ddb)
    lean = store._hot
    assert isinstance(lean, LeanDynamoDB)
    assert lean.http.endpoint == ddb.meta.endpoint_url.rstrip("/")
    task = make_task(settings, "synthetic", {"output_rows": 1})
    claim = store.claim(task, owner="w-1", region=aws.region, lease_seconds=30)
    assert claim.outcome is Claim.CLAIMED
    store.renew(task.report_id, owner="w-1", lease_seconds=30)
    done = store.finish(task.report_id, owner="w-1", state=State.SUCCEEDED, ttl_seconds=60)
    assert store.get(task.report_id) == done
    # The first read and write of each operation were judged through boto3, then lean.
    assert dict(lean.http.calls_by_target) == {
        "DynamoDB_20120810.BatchGetItem": 2,
        "DynamoDB_20120810.PutItem": 2,
    }
    assert lean_dynamodb(ddb) is not None


def test_a_throttled_write_within_the_budget_lands_beyond_it_is_unavailable(
    settings: Settings, aws: RegionResources, proxy: _Proxy
) -> None:
    faults = proxy
    store = _store(settings, aws, proxy)
    budget = 3 * WRITE_ATTEMPTS  # the client's attempts for each of the store's
    faults.throttle = budget - 1
    task = make_task(settings, "synthetic", {"output_rows": 1})
    assert (
        store.claim(task, owner="w", region=aws.region, lease_seconds=30).outcome is Claim.CLAIMED
    )
    faults.throttle = budget
    with pytest.raises(Unavailable):
        store.finish(task.report_id, owner="w", state=State.SUCCEEDED, ttl_seconds=60)
    record = store.get(task.report_id)
    assert record is not None
    assert record.state is State.RUNNING  # nothing half-written
    assert faults.throttle == 0


def test_a_write_whose_reply_is_lost_is_recognised_as_ours(
    settings: Settings, aws: RegionResources, proxy: _Proxy
) -> None:
    faults = proxy
    store = _store(settings, aws, proxy)
    task = make_task(settings, "synthetic", {"output_rows": 1})
    claimed = store.claim(task, owner="w", region=aws.region, lease_seconds=30)
    assert claimed.record is not None
    faults.drop_next = True
    done = store.finish(task.report_id, owner="w", state=State.SUCCEEDED, ttl_seconds=60)
    assert faults.dropped == 1
    assert done.state is State.SUCCEEDED
    assert done.revision == claimed.record.revision + 1  # written once
    assert store.get(task.report_id) == done


def test_the_lean_writes_are_held_to_the_deployed_iam_policy(
    synthesized: Synthesized, aws: RegionResources, settings: Settings
) -> None:
    # Given the local IAM emulation with the stream worker's role of the real template
    enforcer = build_enforcer(synthesized.assembly, region=aws.region, function=STREAM_WORKER)
    item = {"pk": {"S": "report#lean-iam"}}
    with enforced(enforcer):
        session = boto3.session.Session()
        ddb = session.client("dynamodb", region_name=aws.region, endpoint_url=aws.endpoint_url)
        lean = lean_dynamodb(ddb, session=session)
        assert lean is not None
        # A write the role may not make is denied, and every later one still goes through
        # the emulation (none is sent past it on the lean client)
        for _ in range(2):
            with pytest.raises(ClientError) as denied:
                lean.put_item(TableName="no-such-table", Item=item)
            assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert lean.http.calls == 0
        # An allowed one is judged once, then the lean client writes
        for _ in range(3):
            lean.put_item(TableName=settings.table_name, Item=item)
        assert lean.http.calls == 2
    assert enforcer.allowed == 1


def test_a_lean_read_answers_what_boto3s_does(settings: Settings, aws: RegionResources) -> None:
    # Given a report whose item holds binary values (the spec) and a map (the labels)
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    store = store_for(settings, ddb)
    task = make_task(settings, "synthetic", {"output_rows": 1})
    store.claim(task, owner="w", region=aws.region, lease_seconds=30)
    lean = store._hot
    assert isinstance(lean, LeanDynamoDB)
    ddb.put_item(
        TableName=settings.table_name,
        Item={
            resources.PARTITION_KEY: {"S": "lean-read"},
            "blob": {"B": b"\x00\xffbytes"},
            "blobs": {"BS": [b"a", b"\x01"]},
            "nested": {"M": {"l": {"L": [{"B": b"\x02"}, {"N": "1"}, {"NULL": True}]}}},
            # Names that are also type names: a map's key is a name, never a value.
            "B": {"M": {"B": {"S": "not base64!"}}},
            "BS": {"M": {"BS": {"L": [{"M": {"M": {"B": b"\x03"}}}]}}},
        },
    )
    keys = [
        {resources.PARTITION_KEY: {"S": "lean-read"}},
        *intents.report_keys(task.report_id),
    ]
    request = intents.request_items(settings.table_name, keys, consistent=True)

    def responses(answer: dict[str, Any]) -> list[dict[str, Any]]:
        return sorted(answer["Responses"][settings.table_name], key=repr)

    # When both clients read them (the lean one judged already, by the claim's read)
    target = "DynamoDB_20120810.BatchGetItem"
    before = lean.http.calls_by_target[target]
    ours = lean.batch_get_item(RequestItems=request)
    # Then the items are the same, bytes as bytes
    assert lean.http.calls_by_target[target] == before + 1
    assert responses(ours) == responses(ddb.batch_get_item(RequestItems=request))
    # And a single GetItem (judged by its first call through boto3, then lean) alike
    key = {"TableName": settings.table_name, "Key": keys[0], "ConsistentRead": True}
    assert lean.get_item(**key)["Item"] == ddb.get_item(**key)["Item"]
    assert lean.get_item(**key)["Item"] == ddb.get_item(**key)["Item"]
    assert lean.http.calls_by_target["DynamoDB_20120810.GetItem"] == 1
    assert any(item.get("blob") == {"B": b"\x00\xffbytes"} for item in responses(ours))
