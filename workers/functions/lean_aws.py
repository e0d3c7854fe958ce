"""The workers' hot AWS calls as boto3 makes them, on the lean JSON client
(reportgrid/aws_json_sync.py) instead of botocore's per-call machinery: ~1.5 ms of CPU for
a small DynamoDB call, ~2.9 ms for an SQS ReceiveMessage on the 2-core bench machine, against
~0.5 ms here (docs/PERFORMANCE.md, issue 22).

`LeanDynamoDB`: the report store's PutItem, GetItem and BatchGetItem. `LeanSQS`: the queue
workers' ReceiveMessage, DeleteMessage and ChangeMessageVisibility (SQS speaks the AWS JSON
1.0 protocol, as botocore calls it: its service model's protocol is "json"). LeanSQS is not
wired into functions/consumer.py yet: with it the region-loss drill once counted more
double runs than standby claims, unexplained (docs/PERFORMANCE.md). What they
share (`LeanService`): botocore's standard retry mode, its ClientError for a refusal, and
the first call of each operation through the boto3 client, for the local region's IAM.
"""

from __future__ import annotations

import base64
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, Final

import boto3
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path

from functions.clients import MAX_ATTEMPTS, POOL
from reportgrid.aws_json import JSON_1_0, BadAnswer, error_of
from reportgrid.aws_json_sync import SyncAwsJsonClient

if TYPE_CHECKING:
    from boto3.session import Session
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient

# What botocore's standard retry mode retries (botocore/retries/standard.py: the throttling
# codes, the transient codes and statuses, PutItem's modeled retryable error), and a
# ConnectionError or TimeoutError (the lean client's BadAnswer, i.e. botocore's DynamoDB
# crc32 retry, among them).
_RETRIED_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ReplicatedWriteConflictException",
    }
)
_RETRIED_STATUSES: Final = frozenset({500, 502, 503, 504})
_MAX_BACKOFF_SECONDS: Final = 20.0


# What a lean call announces on its boto3 client's event emitter once it has an answer, as
# botocore's after-call does for its own calls: "<LEAN_CALL_EVENT>.<service>.<operation>"
# with service_id, operation, start_s, end_s and status, so that whatever observes the boto3
# client (functions/segments.py: the report's X-Ray subsegments) sees every call.
LEAN_CALL_EVENT: Final = "reportgrid-lean-call"


class LeanService:
    """A boto3 client's calls (keyword requests) on the lean client: the same request (its
    JSON as botocore serializes it), up to MAX_ATTEMPTS attempts with botocore's
    standard-mode backoff (rand(0, 1) x 2^(attempt - 1) s), and the same exceptions:
    ClientError with the service's code, message and HTTP status when the service refuses,
    ConnectionError or TimeoutError when no answer came (what callers map as botocore's).

    Not kept from botocore's standard mode: its retry quota (a bucket of 500 tokens that
    stops retries of a client whose calls mostly fail); the callers' own attempts bound
    the retries instead.

    Each operation (on each resource, where the grant names one: `_judged_key`) goes
    through `first_via` (the boto3 client) until one call of it gets the service's answer.
    AWS judges every signed request itself, but the local region's IAM emulation is a
    botocore hook (reportgrid/local/iam/hook.py) that this client never passes: a first
    call through botocore gets the same verdict, and with it denied every call stays on
    botocore, so a missing grant fails locally as it would in AWS. That is exact while the
    workers' grants have no condition on the request beyond its resource (CDK's grants on
    the table and the queues: none; the queues' policies deny only when
    aws:SecureTransport is false, the same for both clients of one endpoint), as the edge's
    claims.
    """

    target_prefix: ClassVar[str]
    service_id: ClassVar[str]  # the service model's serviceId, as botocore names it
    event_name: ClassVar[str]  # and its name in botocore's events

    def __init__(
        self,
        http: SyncAwsJsonClient,
        *,
        first_via: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.http = http
        self._first_via = first_via
        self._judged: set[Hashable] = set()  # operations whose first call was answered
        self._judged_lock = threading.Lock()
        self._sleep = sleep
        self._jitter = jitter

    def _judged_key(self, operation: str, request: dict[str, Any]) -> Hashable:
        return operation

    def _is_verdict(self, error: ClientError) -> bool:
        """Whether a refusal is still the service's answer to an allowed call."""
        return False

    def _encode(self, request: dict[str, Any]) -> bytes:
        return json.dumps(request, separators=(",", ":")).encode()

    def _via_first(self, operation: str, request: dict[str, Any]) -> Callable[..., Any] | None:
        """boto3's method for this call while the operation is not judged yet."""
        if self._first_via is None or self._judged_key(operation, request) in self._judged:
            return None
        method: Callable[..., Any] = getattr(self._first_via, _snake(operation))
        return method

    def _first(
        self, operation: str, call: Callable[..., Any], request: dict[str, Any]
    ) -> dict[str, Any]:
        key = self._judged_key(operation, request)
        try:
            answer: dict[str, Any] = dict(call(**request))
        except ClientError as err:
            if self._is_verdict(err):
                self._judge(key)
            raise
        self._judge(key)
        return answer

    def _judge(self, key: Hashable) -> None:
        with self._judged_lock:
            self._judged.add(key)

    def _json(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """The call's answer as JSON (botocore: an empty 200 is {})."""
        body = self._call(operation, request)
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            # Not the service's answer (a proxy's page?): as botocore's lost answers, retried.
            raise BadAnswer(f"{operation} answered 200 with a body that is not JSON") from None
        if not isinstance(parsed, dict):
            raise BadAnswer(f"{operation} answered 200 with JSON that is not an object")
        return parsed

    def _call(self, operation: str, request: dict[str, Any]) -> bytes:
        body = self._encode(request)
        start = time.time()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                answer = self.http.answer(self.target_prefix + operation, JSON_1_0, body)
            except (ConnectionError, TimeoutError):
                if attempt == MAX_ATTEMPTS:
                    raise
            else:
                if answer.status == 200:
                    self._announce(operation, start, 200)
                    return answer.body
                error = self._error(answer.status, answer.body, answer.query_error, operation)
                if attempt == MAX_ATTEMPTS or not _retried(answer.status, error):
                    self._announce(operation, start, answer.status)
                    raise error
            self._sleep(self._jitter() * min(2.0 ** (attempt - 1), _MAX_BACKOFF_SECONDS))
        raise AssertionError("unreachable")

    def _error(
        self, status: int, body: bytes, query_error: str | None, operation: str
    ) -> ClientError:
        """botocore's exception for this refusal: its modelled class where the boto3 client
        has one (sqs.exceptions.QueueDoesNotExist, ...), found by the JSON type's name as
        botocore's handlers find it for SQS; a ClientError all the same."""
        error = _client_error(status, body, query_error, operation)
        exceptions = getattr(self._first_via, "exceptions", None)
        if exceptions is None:
            return error
        found = error.response.get("Error", {})
        code = str(found.get("QueryErrorCode") or found.get("Code", ""))
        modelled: type[ClientError] = exceptions.from_code(code)
        return modelled(error.response, operation)

    def _announce(self, operation: str, start: float, status: int) -> None:
        if self._first_via is None:
            return
        self._first_via.meta.events.emit(
            f"{LEAN_CALL_EVENT}.{self.event_name}.{operation}",
            service_id=self.service_id,
            operation=operation,
            start_s=start,
            end_s=time.time(),
            status=status,
        )


class LeanDynamoDB(LeanService):
    """`put_item`, `batch_get_item` and `get_item` as the workers' boto3 client answers
    them: binary values sent in base64 and answered as bytes, as botocore's serializer and
    parser do. A PutItem whose condition failed is judged (DynamoDB's answer)."""

    target_prefix = "DynamoDB_20120810."
    service_id = "DynamoDB"
    event_name = "dynamodb"

    def _is_verdict(self, error: ClientError) -> bool:
        return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"

    def _encode(self, request: dict[str, Any]) -> bytes:
        return json.dumps(request, separators=(",", ":"), default=_json_blob).encode()

    def put_item(self, **request: Any) -> dict[str, Any]:
        if (first := self._via_first("PutItem", request)) is not None:
            return self._first("PutItem", first, request)
        self._call("PutItem", request)
        return {}  # the store asks for no ReturnValues

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        return self._read("BatchGetItem", request)

    def get_item(self, **request: Any) -> dict[str, Any]:
        return self._read("GetItem", request)

    def _read(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if (first := self._via_first(operation, request)) is not None:
            return self._first(operation, first, request)
        return _decoded(self._json(operation, request))


class LeanSQS(LeanService):
    """`receive_message`, `delete_message` and `change_message_visibility` as the workers'
    boto3 client answers them: binary message attributes answered as bytes, an error's
    code the Query code SQS names in x-amzn-query-error (as botocore makes it). IAM names
    the queue, so each operation is judged per queue (the heavy queue and its DLQ apart)."""

    target_prefix = "AmazonSQS."
    service_id = "SQS"
    event_name = "sqs"

    def _judged_key(self, operation: str, request: dict[str, Any]) -> Hashable:
        return (operation, request.get("QueueUrl"))

    def receive_message(self, **request: Any) -> dict[str, Any]:
        if (first := self._via_first("ReceiveMessage", request)) is not None:
            return self._first("ReceiveMessage", first, request)
        answer = self._json("ReceiveMessage", request)
        if "Messages" in answer:
            answer["Messages"] = [_message(m) for m in answer["Messages"]]
        return answer

    def delete_message(self, **request: Any) -> dict[str, Any]:
        return self._no_answer("DeleteMessage", request)

    def change_message_visibility(self, **request: Any) -> dict[str, Any]:
        return self._no_answer("ChangeMessageVisibility", request)

    def _no_answer(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if (first := self._via_first(operation, request)) is not None:
            return self._first(operation, first, request)
        self._call(operation, request)
        return {}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A received message with its binary attribute values (BinaryValue, BinaryListValues)
    in bytes, as botocore parses the JSON protocol's base64 blobs."""
    attributes = message.get("MessageAttributes")
    if not attributes:
        return message
    decoded = {}
    for name, sent in attributes.items():
        value = dict(sent)
        if "BinaryValue" in value:
            value["BinaryValue"] = base64.b64decode(value["BinaryValue"])
        if "BinaryListValues" in value:
            value["BinaryListValues"] = [base64.b64decode(v) for v in value["BinaryListValues"]]
        decoded[name] = value
    return {**message, "MessageAttributes": decoded}


def _snake(operation: str) -> str:
    """boto3's method name of an operation (PutItem -> put_item)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _decoded(answer: dict[str, Any]) -> dict[str, Any]:
    """A GetItem or BatchGetItem answer with its binary values (B, BS) in bytes, as
    botocore parses them. It walks the answer's shape: an item is a map of names to values,
    and a name may be anything, "B" included (a label called B), so only a value is decoded."""
    out = dict(answer)
    if "Item" in answer:
        out["Item"] = _item(answer["Item"])
    if "Responses" in answer:
        out["Responses"] = {
            t: [_item(i) for i in items] for t, items in answer["Responses"].items()
        }
    if "UnprocessedKeys" in answer:
        out["UnprocessedKeys"] = {
            table: {**request, "Keys": [_item(k) for k in request.get("Keys", [])]}
            for table, request in answer["UnprocessedKeys"].items()
        }
    return out


def _item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _value(value) for name, value in item.items()}


def _value(value: dict[str, Any]) -> dict[str, Any]:
    """One AttributeValue: exactly one member, named for its type."""
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    if "BS" in value:
        return {"BS": [base64.b64decode(v) for v in value["BS"]]}
    if "M" in value:
        return {"M": _item(value["M"])}
    if "L" in value:
        return {"L": [_value(v) for v in value["L"]]}
    return value


def _json_blob(value: object) -> str:
    """The JSON protocol's form of a binary attribute value (B, BS), as botocore sends it."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not an attribute value")


def _client_error(
    status: int, answer: bytes, query_error: str | None, operation: str
) -> ClientError:
    """The ClientError botocore raises for this answer: the code and message, the error's
    other members (e.g. the old Item of ReturnValuesOnConditionCheckFailure) alongside.
    With an x-amzn-query-error header ("<code>;<Sender|Receiver>"), botocore's parser makes
    its code the error's, the JSON type's name its QueryErrorCode and the fault its Type."""
    code, message, doc = error_of(answer)
    response: dict[str, Any] = {
        k: v for k, v in doc.items() if k not in {"__type", "message", "Message"}
    }
    error = {"Code": code, "Message": message}
    query_code, _, fault = (query_error or "").partition(";")
    if query_code and fault:
        error = {"Code": query_code, "Message": message, "QueryErrorCode": code, "Type": fault}
    response["Error"] = error
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)  # type: ignore[arg-type]


def _retried(status: int, error: ClientError) -> bool:
    found = error.response.get("Error", {})
    codes = {found.get("Code", ""), found.get("QueryErrorCode", "")}
    return bool(codes & _RETRIED_CODES) or status in _RETRIED_STATUSES


def _http_for(
    boto_client: Any, service: str, session: Session | None, headers: dict[str, str] | None = None
) -> SyncAwsJsonClient | None:
    """The lean client of a boto3 client's endpoint and region, signed with the credentials
    of `session` (boto3's default session: the one functions.clients.client builds from),
    the provider chain botocore refreshes (the Lambda's environment, the ECS task role on
    Fargate). None without credentials (boto3 then fails each call as it would)."""
    chosen = session or boto3.DEFAULT_SESSION or boto3.Session()
    credentials = chosen.get_credentials()
    if credentials is None:
        return None
    # The endpoint botocore resolved: https://<service>.<region>.amazonaws.com in AWS, the
    # moto server locally; TLS verified against the CA bundle boto3 trusts.
    endpoint = boto_client.meta.endpoint_url
    context = None
    if endpoint.startswith("https:"):
        bundle = chosen._session.get_config_variable("ca_bundle")  # AWS_CA_BUNDLE, if set
        context = ssl.create_default_context(cafile=bundle or get_cert_path(True))
    return SyncAwsJsonClient(
        endpoint,
        boto_client.meta.region_name,
        service,
        credentials,
        ssl_context=context,
        idle_connections=POOL,
        headers=headers,
    )


def lean_dynamodb(ddb: DynamoDBClient, *, session: Session | None = None) -> LeanDynamoDB | None:
    """The lean DynamoDB client of `ddb` (its endpoint, region and session's credentials)."""
    http = _http_for(ddb, "dynamodb", session)
    return None if http is None else LeanDynamoDB(http, first_via=ddb)


def lean_sqs(sqs: SQSClient, *, session: Session | None = None) -> LeanSQS | None:
    """The lean SQS client of `sqs` (its endpoint, region and session's credentials)."""
    # SQS is "awsQueryCompatible": botocore sends this on every call (serialize.py), and
    # with it SQS names an error's Query code in x-amzn-query-error.
    http = _http_for(sqs, "sqs", session, {"x-amzn-query-mode": "true"})
    return None if http is None else LeanSQS(http, first_via=sqs)
