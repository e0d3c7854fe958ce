"""The AWS clients a worker process uses, built from its settings (endpoint included, so
the local region's moto server works alike). Short timeouts: a stuck call fails as a
transient error instead of eating the Lambda's or the lease's time.

`LeanDynamoDB` is boto3's `put_item`, `batch_get_item` and `get_item` for the report
store's hot path (conditional writes, reads), on the lean JSON client
(reportgrid/aws_json_sync.py) instead of botocore's per-call machinery (~1.5 ms of CPU a
call: docs/PERFORMANCE.md, issue 22).

`client` is typed per service, as boto3-stubs types `boto3.client`. The stubs are a dev
dependency only (neither the Lambda asset nor the worker image has them), so they are
imported for the type checker alone."""

from __future__ import annotations

import base64
import json
import random
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path

from reportgrid.aws_json import JSON_1_0, BadAnswer, error_of
from reportgrid.aws_json_sync import SyncAwsJsonClient
from reportgrid.settings import Settings

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.client import BaseClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kinesis.client import KinesisClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sts.client import STSClient

Service = Literal["dynamodb", "events", "kinesis", "s3", "sqs", "sts", "xray"]

USER_AGENT: Final = "reportgrid-workers"
_POOL: Final = 32
MAX_ATTEMPTS: Final = 3  # per call, botocore's standard retry mode (LeanDynamoDB alike)
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    # A batch's writes are in flight together (functions.runner.IO_THREADS): a connection
    # each, kept (botocore's default pool of 10 would discard and reconnect).
    max_pool_connections=_POOL,
    # The service validates every request anyway (a bad one is a 4xx we never retry);
    # botocore's client-side check of the same costs ~0.3 ms of CPU per DynamoDB call.
    parameter_validation=False,
    # A fixed User-Agent: botocore otherwise rebuilds its ~16-part string (each part
    # sanitized) for every request, a third of a small call's client CPU in a profile.
    user_agent=USER_AGENT,
)


@overload
def client(
    service: Literal["dynamodb"], settings: Settings, *, session: Session | None = None
) -> DynamoDBClient: ...
@overload
def client(
    service: Literal["events"], settings: Settings, *, session: Session | None = None
) -> BaseClient: ...  # no EventBridge stubs installed: functions/events types its calls
@overload
def client(
    service: Literal["xray"], settings: Settings, *, session: Session | None = None
) -> BaseClient: ...  # no X-Ray stubs installed: functions/segments.py types its one call


@overload
def client(
    service: Literal["kinesis"], settings: Settings, *, session: Session | None = None
) -> KinesisClient: ...
@overload
def client(
    service: Literal["s3"], settings: Settings, *, session: Session | None = None
) -> S3Client: ...
@overload
def client(
    service: Literal["sqs"], settings: Settings, *, session: Session | None = None
) -> SQSClient: ...
@overload
def client(
    service: Literal["sts"], settings: Settings, *, session: Session | None = None
) -> STSClient: ...
def client(service: Service, settings: Settings, *, session: Session | None = None) -> BaseClient:
    """A client in the settings' region. `session`: build it from that session (its own
    credentials; a thread that is not the main one needs a session of its own, since
    boto3's default session is not thread-safe) instead of boto3's default session."""
    region, endpoint = settings.region, settings.aws_endpoint_url
    if session is None:
        return boto3.client(service, region_name=region, endpoint_url=endpoint, config=_CONFIG)
    return session.client(service, region_name=region, endpoint_url=endpoint, config=_CONFIG)


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
_TARGET_PREFIX: Final = "DynamoDB_20120810."


class LeanDynamoDB:
    """`put_item`, `batch_get_item` and `get_item` (keyword requests) as the workers' boto3
    client answers them: the same request (its JSON as botocore serializes it: binary values in
    base64), the same answer (binary values decoded to bytes, as botocore's parser does),
    up to MAX_ATTEMPTS attempts with botocore's standard-mode backoff (rand(0, 1) x
    2^(attempt - 1) s), and the same exceptions: ClientError with the service's code,
    message and HTTP status when DynamoDB refuses (ConditionalCheckFailedException
    included), ConnectionError or TimeoutError when no answer came (what the store maps
    as botocore's).

    Not kept from botocore's standard mode: its retry quota (a bucket of 500 tokens that
    stops retries of a client whose calls mostly fail); the store's own attempts bound
    the retries instead.

    Each operation goes through `first_via` (the boto3 client) until one call of it gets
    DynamoDB's answer (for PutItem: written, or its condition failed). AWS judges every
    signed request itself, but the local region's IAM emulation is a botocore hook
    (reportgrid/local/iam/hook.py) that this client never passes: a first call through
    botocore gets the same verdict, and with it denied every call stays on botocore, so a
    missing grant fails locally as it would in AWS. That is exact while the workers'
    grants have no condition on the request (CDK grant_read_write_data on the table:
    none), as the edge's claims.
    """

    def __init__(
        self,
        http: SyncAwsJsonClient,
        *,
        first_via: DynamoDBClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.http = http
        self._first_via = first_via
        self._judged: set[str] = set()  # operations whose first call was answered
        self._judged_lock = threading.Lock()
        self._sleep = sleep
        self._jitter = jitter

    def put_item(self, **request: Any) -> dict[str, Any]:
        if self._first_via is not None and "PutItem" not in self._judged:
            return self._first("PutItem", self._first_via.put_item, request)
        self._call("PutItem", request)
        return {}  # the store asks for no ReturnValues

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        first = self._first_via.batch_get_item if self._first_via is not None else None
        return self._read("BatchGetItem", first, request)

    def get_item(self, **request: Any) -> dict[str, Any]:
        first = self._first_via.get_item if self._first_via is not None else None
        return self._read("GetItem", first, request)

    def _read(
        self, operation: str, first: Callable[..., Any] | None, request: dict[str, Any]
    ) -> dict[str, Any]:
        if first is not None and operation not in self._judged:
            return self._first(operation, first, request)
        body = self._call(operation, request)
        try:
            parsed = json.loads(body) if body else {}  # botocore: an empty 200 is {}
        except ValueError:
            # Not DynamoDB's answer (a proxy's page?): as botocore's lost answers, retried.
            raise BadAnswer(f"{operation} answered 200 with a body that is not JSON") from None
        return _decoded(parsed)

    def _call(self, operation: str, request: dict[str, Any]) -> bytes:
        body = json.dumps(request, separators=(",", ":"), default=_json_blob).encode()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                status, answer = self.http.call(_TARGET_PREFIX + operation, JSON_1_0, body)
            except (ConnectionError, TimeoutError):
                if attempt == MAX_ATTEMPTS:
                    raise
            else:
                if status == 200:
                    return answer
                error = _client_error(status, answer, operation)
                if attempt == MAX_ATTEMPTS or not _retried(status, error):
                    raise error
            self._sleep(self._jitter() * min(2.0 ** (attempt - 1), _MAX_BACKOFF_SECONDS))
        raise AssertionError("unreachable")

    def _first(
        self, operation: str, call: Callable[..., Any], request: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = dict(call(**request))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                self._judge(operation)
            raise
        self._judge(operation)
        return answer

    def _judge(self, operation: str) -> None:
        with self._judged_lock:
            self._judged.add(operation)


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


def _client_error(status: int, answer: bytes, operation: str) -> ClientError:
    """The ClientError botocore raises for this answer: the code and message, the error's
    other members (e.g. the old Item of ReturnValuesOnConditionCheckFailure) alongside."""
    code, message, doc = error_of(answer)
    response: dict[str, Any] = {
        k: v for k, v in doc.items() if k not in {"__type", "message", "Message"}
    }
    response["Error"] = {"Code": code, "Message": message}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)  # type: ignore[arg-type]


def _retried(status: int, error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in _RETRIED_CODES or status in _RETRIED_STATUSES


def lean_dynamodb(ddb: DynamoDBClient, *, session: Session | None = None) -> LeanDynamoDB | None:
    """The lean DynamoDB client of `ddb`'s endpoint and region, signed with the credentials of
    `session` (boto3's default session: the one `client` builds from), the provider chain
    botocore refreshes (the Lambda's environment, the ECS task role on Fargate). None
    without credentials (boto3 then fails each call as it would)."""
    chosen = session or boto3.DEFAULT_SESSION or boto3.Session()
    credentials = chosen.get_credentials()
    if credentials is None:
        return None
    # The endpoint botocore resolved: https://dynamodb.<region>.amazonaws.com in AWS, the
    # moto server locally; TLS verified against the CA bundle boto3 trusts.
    endpoint = ddb.meta.endpoint_url
    context = None
    if endpoint.startswith("https:"):
        bundle = chosen._session.get_config_variable("ca_bundle")  # AWS_CA_BUNDLE, if set
        context = ssl.create_default_context(cafile=bundle or get_cert_path(True))
    http = SyncAwsJsonClient(
        endpoint,
        ddb.meta.region_name,
        "dynamodb",
        credentials,
        ssl_context=context,
        idle_connections=_POOL,
    )
    return LeanDynamoDB(http, first_via=ddb)
