"""Which IAM actions, on which resources, each AWS call needs: the operations this code base
makes (core/, edge/, workers/, and the local event sources that stand in for Lambda's),
from the Service Authorization Reference's tables
(docs.aws.amazon.com/service-authorization/latest/reference/).

An operation missing from OPERATIONS is denied (fail-closed) with a message naming it: a
new call site is a red test until its IAM action is written down here. A resource the
call does not name (GetRecords with an iterator this process never got, a secret by name)
is Unresolved, and the call denied.

Some calls need more than their own action: AssumeRole with Tags also needs
sts:TagSession; DeleteObjects needs s3:DeleteObject(Version) per key; and a call on a
bucket, stream or queue encrypted with a customer-managed KMS key needs the key
(`implicit_kms`), judged against the key's policy.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from reportgrid.local.iam.patterns import ContextValue, Unresolved, Value
from reportgrid.local.iam.resolve import queue_arn_from_url


@dataclass(frozen=True, slots=True)
class Call:
    service: str  # the IAM prefix: "dynamodb", "s3", ...
    operation: str  # botocore's operation name: "PutItem"
    params: Mapping[str, Any]
    region: str
    account: str


@dataclass(frozen=True, slots=True)
class Need:
    action: str
    resource: str | Unresolved
    context: Mapping[str, ContextValue] = field(default_factory=dict)


class StreamIterators:
    """Which stream each shard iterator belongs to (iterators are opaque): remembered
    from GetShardIterator and GetRecords replies, so GetRecords can be judged."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._streams: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, iterator: object, stream_arn: object) -> None:
        if not isinstance(iterator, str) or not isinstance(stream_arn, str):
            return
        with self._lock:
            self._streams[iterator] = stream_arn
            while len(self._streams) > self._size:
                self._streams.popitem(last=False)

    def stream_of(self, iterator: object) -> str | None:
        with self._lock:
            return self._streams.get(iterator) if isinstance(iterator, str) else None


Mapper = Callable[[Call, StreamIterators], list[Need]]


def _missing(call: Call, what: str) -> Unresolved:
    return Unresolved(f"{call.service}:{call.operation} names no {what}")


# --- DynamoDB ----------------------------------------------------------------------------


def _table(call: Call, name: object) -> str | Unresolved:
    if not isinstance(name, str) or not name:
        return _missing(call, "TableName")
    if name.startswith("arn:"):
        return name  # DynamoDB takes a table ARN as TableName too
    return f"arn:aws:dynamodb:{call.region}:{call.account}:table/{name}"


def _ddb_single(call: Call, _: StreamIterators) -> list[Need]:
    table = _table(call, call.params.get("TableName"))
    index = call.params.get("IndexName")
    if isinstance(table, str) and isinstance(index, str):
        table = f"{table}/index/{index}"
    return [Need(f"dynamodb:{call.operation}", table)]


def _ddb_batch(call: Call, _: StreamIterators) -> list[Need]:
    tables = call.params.get("RequestItems") or {"": None}
    return [Need(f"dynamodb:{call.operation}", _table(call, name)) for name in tables]


_TRANSACT_ACTIONS: Final = {
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "Get": "dynamodb:GetItem",
}


def _ddb_transact(call: Call, _: StreamIterators) -> list[Need]:
    found = [
        Need(_TRANSACT_ACTIONS.get(kind, f"dynamodb:{kind}"), _table(call, body.get("TableName")))
        for item in call.params.get("TransactItems", [])
        for kind, body in item.items()
    ]
    return found or [Need(f"dynamodb:{call.operation}", _missing(call, "TransactItems"))]


# --- Kinesis -----------------------------------------------------------------------------


def _stream(call: Call) -> str | Unresolved:
    arn = call.params.get("StreamARN")
    if isinstance(arn, str):
        return arn
    name = call.params.get("StreamName")
    if isinstance(name, str):
        return f"arn:aws:kinesis:{call.region}:{call.account}:stream/{name}"
    return _missing(call, "stream")


def _kinesis(call: Call, _: StreamIterators) -> list[Need]:
    return [Need(f"kinesis:{call.operation}", _stream(call))]


def _kinesis_get_records(call: Call, iterators: StreamIterators) -> list[Need]:
    arn = call.params.get("StreamARN") or iterators.stream_of(call.params.get("ShardIterator"))
    resource = (
        arn
        if isinstance(arn, str)
        else Unresolved("a shard iterator this process did not get from GetShardIterator")
    )
    return [Need("kinesis:GetRecords", resource)]


# --- SQS ---------------------------------------------------------------------------------


def _queue(call: Call) -> str | Unresolved:
    url = call.params.get("QueueUrl")
    arn = queue_arn_from_url(url, call.region) if isinstance(url, str) else None
    return arn or _missing(call, "queue URL")


def _sqs(action: str) -> Mapper:
    return lambda call, _: [Need(f"sqs:{action}", _queue(call))]


def _sqs_get_queue_url(call: Call, _: StreamIterators) -> list[Need]:
    name = call.params.get("QueueName")
    owner = call.params.get("QueueOwnerAWSAccountId") or call.account
    resource = (
        f"arn:aws:sqs:{call.region}:{owner}:{name}"
        if isinstance(name, str)
        else _missing(call, "QueueName")
    )
    return [Need("sqs:GetQueueUrl", resource)]


# --- S3 ----------------------------------------------------------------------------------


def _bucket(call: Call) -> str | Unresolved:
    bucket = call.params.get("Bucket")
    return f"arn:aws:s3:::{bucket}" if isinstance(bucket, str) else _missing(call, "Bucket")


def _object(call: Call, key: object = None) -> str | Unresolved:
    bucket = _bucket(call)
    key = call.params.get("Key") if key is None else key
    if isinstance(bucket, Unresolved):
        return bucket
    return f"{bucket}/{key}" if isinstance(key, str) else _missing(call, "Key")


def _s3_read(call: Call, _: StreamIterators) -> list[Need]:
    # HeadObject is authorized as GetObject; a version needs s3:GetObjectVersion.
    action = "s3:GetObjectVersion" if call.params.get("VersionId") else "s3:GetObject"
    return [Need(action, _object(call))]


def _s3_put(call: Call, _: StreamIterators) -> list[Need]:
    acl = call.params.get("ACL")
    context: dict[str, ContextValue] = {"s3:x-amz-acl": acl} if isinstance(acl, str) else {}
    found = [Need("s3:PutObject", _object(call), context)]
    if call.params.get("Tagging"):
        found.append(Need("s3:PutObjectTagging", _object(call)))
    if acl or any(call.params.get(g) for g in ("GrantRead", "GrantFullControl")):
        found.append(Need("s3:PutObjectAcl", _object(call), context))
    return found


def _s3_delete(call: Call, _: StreamIterators) -> list[Need]:
    action = "s3:DeleteObjectVersion" if call.params.get("VersionId") else "s3:DeleteObject"
    return [Need(action, _object(call))]


def _s3_delete_objects(call: Call, _: StreamIterators) -> list[Need]:
    # DeleteObjects is not an action of its own: each key needs its delete permission.
    objects = (call.params.get("Delete") or {}).get("Objects") or []
    found = [
        Need(
            "s3:DeleteObjectVersion" if item.get("VersionId") else "s3:DeleteObject",
            _object(call, item.get("Key")),
        )
        for item in objects
    ]
    return found or [Need("s3:DeleteObject", _missing(call, "objects"))]


def _s3_list(action: str) -> Mapper:
    def needs(call: Call, _: StreamIterators) -> list[Need]:
        context: dict[str, ContextValue] = {
            f"s3:{key.lower().replace('keys', '-keys')}": str(call.params[key])
            for key in ("Prefix", "Delimiter", "MaxKeys")
            if key in call.params
        }
        return [Need(action, _bucket(call), context)]

    return needs


def _s3_copy(call: Call, iterators: StreamIterators) -> list[Need]:
    source = call.params.get("CopySource")
    if isinstance(source, Mapping):
        bucket, key, version = source.get("Bucket"), source.get("Key"), source.get("VersionId")
    elif isinstance(source, str):
        path, _, query = source.lstrip("/").partition("?versionId=")
        bucket, _, key = path.partition("/")
        version = query or None
    else:
        bucket = key = version = None
    origin: str | Unresolved = (
        f"arn:aws:s3:::{bucket}/{key}" if bucket and key else _missing(call, "CopySource")
    )
    read = "s3:GetObjectVersion" if version else "s3:GetObject"
    return [Need(read, origin), *_s3_put(call, iterators)]


def _s3_object(action: str) -> Mapper:
    return lambda call, _: [Need(action, _object(call))]


# --- STS, Secrets Manager, KMS, SNS --------------------------------------------------------


def _sts_assume_role(call: Call, _: StreamIterators) -> list[Need]:
    role = call.params.get("RoleArn")
    resource: str | Unresolved = role if isinstance(role, str) else _missing(call, "RoleArn")
    tags = call.params.get("Tags") or []
    context: dict[str, ContextValue] = {
        f"aws:requesttag/{t['Key'].lower()}": str(t["Value"]) for t in tags
    }
    if tags:
        context["aws:tagkeys"] = tuple(str(t["Key"]) for t in tags)
    found = [Need("sts:AssumeRole", resource, context)]
    if tags:  # passing session tags needs sts:TagSession on the role as well
        found.append(Need("sts:TagSession", resource, context))
    if call.params.get("SourceIdentity"):
        found.append(Need("sts:SetSourceIdentity", resource, context))
    return found


# A secret's ARN ends in "-" and six random characters. A call may name the secret by its
# name or by a partial ARN without them (GetSecretValue: "You can specify a partial ARN
# too ... as long as it uniquely matches only one secret"), but IAM judges the request
# against the secret's full ARN; a policy granting a secret by name must therefore allow
# any suffix (`name-??????`, as CDK's fromSecretNameV2 grants do). Locally the suffix is
# moto's, unknown here: this stand-in matches exactly what any real suffix would.
_SECRET_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
_SUFFIX_STAND_IN = "-LOCALx"


def _secret(call: Call, _: StreamIterators) -> list[Need]:
    secret = call.params.get("SecretId")
    if not isinstance(secret, str) or not secret:
        return [Need(f"secretsmanager:{call.operation}", _missing(call, "SecretId"))]
    arn = (
        secret
        if secret.startswith("arn:")
        else f"arn:aws:secretsmanager:{call.region}:{call.account}:secret:{secret}"
    )
    name = arn.split(":secret:", 1)[-1]
    if not _SECRET_SUFFIX.search(name):
        arn += _SUFFIX_STAND_IN
    return [Need(f"secretsmanager:{call.operation}", arn)]


def _key_arn(call: Call, key: object) -> str | Unresolved:
    if not isinstance(key, str):
        return _missing(call, "KeyId")
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return Unresolved(f"KMS alias {key}: which key it names is not known here")
    return f"arn:aws:kms:{call.region}:{call.account}:key/{key}"


def _kms(call: Call, _: StreamIterators) -> list[Need]:
    return [Need(f"kms:{call.operation}", _key_arn(call, call.params.get("KeyId")))]


def _sns_publish(call: Call, _: StreamIterators) -> list[Need]:
    topic = call.params.get("TopicArn") or call.params.get("TargetArn")
    resource = topic if isinstance(topic, str) else _missing(call, "TopicArn")
    return [Need("sns:Publish", resource)]


def _events_put(call: Call, _: StreamIterators) -> list[Need]:
    """events:PutEvents on each entry's bus (a name or an ARN; none is the default bus)."""
    buses = {str(e.get("EventBusName") or "default") for e in call.params.get("Entries", [])}
    prefix = f"arn:aws:events:{call.region}:{call.account}:event-bus/"
    return [
        Need("events:PutEvents", bus if bus.startswith("arn:") else prefix + bus)
        for bus in sorted(buses)
    ] or [Need("events:PutEvents", _missing(call, "Entries"))]


def _unscoped(action: str) -> Mapper:
    """An action without resource types: a policy grants it on "*"."""
    return lambda call, _: [Need(action, "*")]


OPERATIONS: Final[dict[tuple[str, str], Mapper]] = {
    **{
        ("dynamodb", op): _ddb_single
        for op in (
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "Scan",
            "DescribeTable",
        )
    },
    ("dynamodb", "BatchGetItem"): _ddb_batch,
    ("dynamodb", "BatchWriteItem"): _ddb_batch,
    ("dynamodb", "TransactWriteItems"): _ddb_transact,
    ("dynamodb", "TransactGetItems"): _ddb_transact,
    **{
        ("kinesis", op): _kinesis
        for op in (
            "PutRecord",
            "PutRecords",
            "DescribeStream",
            "DescribeStreamSummary",
            "ListShards",
            "GetShardIterator",
        )
    },
    ("kinesis", "GetRecords"): _kinesis_get_records,
    ("sqs", "SendMessage"): _sqs("SendMessage"),
    ("sqs", "SendMessageBatch"): _sqs("SendMessage"),
    ("sqs", "ReceiveMessage"): _sqs("ReceiveMessage"),
    ("sqs", "DeleteMessage"): _sqs("DeleteMessage"),
    ("sqs", "DeleteMessageBatch"): _sqs("DeleteMessage"),
    ("sqs", "ChangeMessageVisibility"): _sqs("ChangeMessageVisibility"),
    ("sqs", "ChangeMessageVisibilityBatch"): _sqs("ChangeMessageVisibility"),
    ("sqs", "GetQueueAttributes"): _sqs("GetQueueAttributes"),
    ("sqs", "PurgeQueue"): _sqs("PurgeQueue"),
    ("sqs", "GetQueueUrl"): _sqs_get_queue_url,
    ("s3", "GetObject"): _s3_read,
    ("s3", "HeadObject"): _s3_read,
    ("s3", "PutObject"): _s3_put,
    ("s3", "CopyObject"): _s3_copy,
    ("s3", "DeleteObject"): _s3_delete,
    ("s3", "DeleteObjects"): _s3_delete_objects,
    ("s3", "ListObjectVersions"): _s3_list("s3:ListBucketVersions"),
    ("s3", "ListObjectsV2"): _s3_list("s3:ListBucket"),
    ("s3", "ListObjects"): _s3_list("s3:ListBucket"),
    ("s3", "HeadBucket"): _s3_list("s3:ListBucket"),
    ("s3", "GetBucketLocation"): _s3_list("s3:GetBucketLocation"),
    # upload_fileobj/download_fileobj of large objects use multipart uploads.
    ("s3", "CreateMultipartUpload"): _s3_object("s3:PutObject"),
    ("s3", "UploadPart"): _s3_object("s3:PutObject"),
    ("s3", "CompleteMultipartUpload"): _s3_object("s3:PutObject"),
    ("s3", "AbortMultipartUpload"): _s3_object("s3:AbortMultipartUpload"),
    ("sts", "AssumeRole"): _sts_assume_role,
    ("sts", "GetCallerIdentity"): lambda call, _: [],  # needs no permission
    ("secretsmanager", "GetSecretValue"): _secret,
    ("secretsmanager", "DescribeSecret"): _secret,
    **{("kms", op): _kms for op in ("Decrypt", "Encrypt", "GenerateDataKey", "DescribeKey")},
    ("sns", "Publish"): _sns_publish,
    ("events", "PutEvents"): _events_put,
    # X-Ray's write actions have no resource types (Service Authorization Reference,
    # "Actions defined by AWS X-Ray"): a policy grants them on "*".
    **{("xray", op): _unscoped(f"xray:{op}") for op in ("PutTraceSegments", "PutTelemetryRecords")},
}


def needs(call: Call, iterators: StreamIterators) -> list[Need] | None:
    """What the call needs; None when the operation is not mapped (deny it)."""
    mapper = OPERATIONS.get((call.service, call.operation))
    return None if mapper is None else mapper(call, iterators)


# (service, operation) -> the KMS actions a customer-managed key of its resource needs
# (S3 SSE-KMS, Kinesis and SQS server-side encryption; AWS-managed keys need none).
_IMPLICIT_KMS: Final = {
    ("s3", "PutObject"): ("kms:GenerateDataKey",),
    ("s3", "CopyObject"): ("kms:GenerateDataKey", "kms:Decrypt"),
    ("s3", "CreateMultipartUpload"): ("kms:GenerateDataKey", "kms:Decrypt"),
    ("s3", "GetObject"): ("kms:Decrypt",),
    ("kinesis", "PutRecord"): ("kms:GenerateDataKey",),
    ("kinesis", "PutRecords"): ("kms:GenerateDataKey",),
    ("kinesis", "GetRecords"): ("kms:Decrypt",),
    ("sqs", "SendMessage"): ("kms:GenerateDataKey", "kms:Decrypt"),
    ("sqs", "SendMessageBatch"): ("kms:GenerateDataKey", "kms:Decrypt"),
    ("sqs", "ReceiveMessage"): ("kms:Decrypt",),
}


def implicit_kms(
    call: Call, found: list[Need], key_of: Callable[[str], Value | None]
) -> list[Need]:
    """The KMS needs of a call whose resource is encrypted with a customer-managed key
    (the service calls KMS on the caller's behalf, kms:ViaService set)."""
    actions = _IMPLICIT_KMS.get((call.service, call.operation))
    if not actions or not found:
        return []
    resource = found[-1].resource  # CopyObject: the destination is the last need
    key = key_of(resource) if isinstance(resource, str) else None
    if key is None:
        return []
    context: dict[str, ContextValue] = {
        "kms:viaservice": f"{call.service}.{call.region}.amazonaws.com",
        "kms:calleraccount": call.account,
    }
    target: str | Unresolved = key if isinstance(key, str | Unresolved) else str(key)
    return [Need(action, target, context) for action in actions]
