"""Idempotency keys: one durable claim item per (tenant, key) in the report table, written by
the edge before it enqueues anything.

A keyed Submit mints a fresh id (time- and region-bearing, like any other) and claims its
key with ONE conditional PutItem: the item may be written when there is none, or when the
one there has expired (`expires_at` past: DynamoDB's TTL deletes lazily, typically within
a few days, so an expired item can still be there). When the condition fails, DynamoDB
answers with the item that is there (ReturnValuesOnConditionCheckFailure=ALL_OLD, in the
ConditionalCheckFailedException's `Item`; docs.aws.amazon.com/amazondynamodb/latest/
APIReference/API_PutItem.html), so a retry learns the first call's report id and request
fingerprint in the same round trip. A claim that shows our own id is ours (our write was
re-sent after a stale connection, or retried after a lost answer).

The claim is written through the lean JSON client (grpc_edge/aws_json.py: ~0.9 ms of CPU
less than aiobotocore per call) once a first claim through aiobotocore got the local IAM
emulation's verdict (as the Kinesis writer does; grpc_edge/kinesis_writer.py). The rare
calls, a release of a claim made too late to enqueue and the consistent read of a claim
an emulator did not return, go through aiobotocore.

Within one region the claim is exact. Across regions it is as good as the global table's
replication (typically about a second): a retry that lands in another region before the
first claim replicated claims the key there too, with its own id, and two reports run;
replication then keeps one claim (last writer wins) for every later retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from google.protobuf import json_format

from grpc_edge.aws_json import JSON_1_0, AwsJsonClient, error_of
from grpc_edge.store import bounded
from reportgrid import errors, resources
from reportgrid.errors import IdempotencyKeyReused, InvalidArgument, Unavailable
from reportgrid.v1 import reports_pb2 as pb

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient

logger = Logger(service="reportgrid-edge", child=True)

PUT_ITEM: Final = "DynamoDB_20120810.PutItem"
KEY_LIFETIME_SECONDS: Final = resources.IDEMPOTENCY_KEY_HOURS * 3600
# The PreconditionFailure type of a key reused with another request.
REUSED: Final = errors.IDEMPOTENCY_KEY_REUSED
FIELD: Final = "idempotency_key"
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_THROTTLED: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_ATTEMPTS: Final = 3  # as the aiobotocore DynamoDB client's (clients.py)
_CONDITION: Final = "attribute_not_exists(#pk) OR #exp < :now"
_NAMES: Final = {"#pk": resources.PARTITION_KEY, "#exp": resources.TTL_ATTRIBUTE}

Item = dict[str, Any]
# (written, the item that failed the condition: None when written, or when the answer did
# not carry it)
_Put = tuple[bool, Item | None]


@dataclass(frozen=True, slots=True)
class Claim:
    """Which report a tenant's key names, and the request that made it."""

    report_id: str
    fingerprint: str
    created_ms: int
    region: str
    expires_at: int  # epoch seconds


@dataclass(frozen=True, slots=True)
class Claimed:
    claim: Claim
    fresh: bool  # this call made the claim: its report is new


# Marks a fingerprint of the canonical JSON form. Claims stored before it (live 24 h) hold
# the SHA-256 of deterministic protobuf bytes, unmarked; `Fingerprint.matches` accepts those
# too, so a deploy does not refuse a retry that straddles it. Remove the legacy branch 24 h
# after every region runs this version.
_VERSION: Final = "j1:"
# Made once: json.dumps with arguments builds an encoder per call (~1.5 us).
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A request's fingerprint (`value`, stored in the claim) and what it was taken of (the
    key-less copy, its inline data), for the rare comparison with a legacy fingerprint."""

    value: str
    _copy: pb.SubmitReportRequest = field(compare=False, repr=False)
    _inline: bytes = field(compare=False, repr=False)

    def matches(self, stored: str) -> bool:
        if stored == self.value:
            return True
        if stored.startswith(_VERSION):
            return False
        if self._inline:  # as the legacy fingerprint saw it (not its unknown fields)
            self._copy.input.inline_data = self._inline
        legacy = hashlib.sha256(self._copy.SerializeToString(deterministic=True))
        return stored == legacy.hexdigest()


def fingerprint(request: pb.SubmitReportRequest) -> Fingerprint:
    """SHA-256 of the request as sent, without its idempotency key, in canonical JSON: the
    proto3 JSON mapping with sorted keys and no spaces. Not the protobuf bytes: even
    deterministic serialization is not canonical, it may change with the schema, the
    library or the build (protobuf.dev/programming-guides/serialization-not-canonical/),
    and a retry after a deploy must fingerprint alike. Fields at their defaults are left
    out, so a field added later changes no earlier request's fingerprint; unknown fields
    (a newer client's) are dropped, as the rest of the edge ignores them. Call it before
    anything fills defaults in (quotas).

    Inline input (up to megabytes) counts by its SHA-256: base64 in JSON would cost ten
    times the hash."""
    copy = pb.SubmitReportRequest()
    copy.CopyFrom(request)
    copy.ClearField("idempotency_key")
    copy.DiscardUnknownFields()
    inline = request.input.inline_data
    if inline:
        copy.input.inline_data = hashlib.sha256(inline).digest()
    try:
        doc = json_format.MessageToDict(copy, preserving_proto_field_name=True)
    except json_format.SerializeToJsonError:
        # A Struct number that is NaN or infinite: JSON has no such number.
        raise InvalidArgument.field(
            "params", "NaN and Infinity are not JSON numbers; send them as strings"
        ) from None
    text = _CANONICAL.encode(doc)
    return Fingerprint(_VERSION + hashlib.sha256(text.encode()).hexdigest(), copy, inline)


def claim_item(pk: dict[str, str], claim: Claim) -> Item:
    """The claim item, as aiobotocore takes it."""
    return {
        **{k: {"S": v} for k, v in pk.items()},
        "report_id": {"S": claim.report_id},
        "fingerprint": {"S": claim.fingerprint},
        "created_ms": {"N": str(claim.created_ms)},
        "region": {"S": claim.region},
        resources.TTL_ATTRIBUTE: {"N": str(claim.expires_at)},
    }


def put_claim_head(table_name: str) -> str:
    """What every claim's PutItem body starts with (`put_claim_body`)."""
    return (
        f'{{"TableName":{json.dumps(table_name)},"ConditionExpression":{json.dumps(_CONDITION)},'
        f'"ExpressionAttributeNames":{json.dumps(_NAMES, separators=(",", ":"))},'
        '"ReturnValuesOnConditionCheckFailure":"ALL_OLD","Item":{'
    )


def put_claim_body(head: str, pk: dict[str, str], claim: Claim, now: int) -> bytes:
    """The PutItem JSON of `claim_item` with the condition's values, written as text: 2.7
    instead of 15 us (json.dumps of the whole document; docs/PERFORMANCE.md, keyed rows).
    Every string goes through json.dumps; tests/unit/edge/test_claim_body.py checks it
    against the aiobotocore call's parameters."""
    s = json.dumps
    key = ",".join(f'{s(k)}:{{"S":{s(v)}}}' for k, v in pk.items())
    return (
        f'{head}{key},"report_id":{{"S":{s(claim.report_id)}}},'
        f'"fingerprint":{{"S":{s(claim.fingerprint)}}},"created_ms":{{"N":"{claim.created_ms:d}"}},'
        f'"region":{{"S":{s(claim.region)}}},'
        f'{s(resources.TTL_ATTRIBUTE)}:{{"N":"{claim.expires_at:d}"}}}},'
        f'"ExpressionAttributeValues":{{":now":{{"N":"{now:d}"}}}}}}'
    ).encode()


def claim_key(tenant: str, key: str) -> dict[str, str]:
    return resources.idempotency_claim_key(tenant, hashlib.sha256(key.encode()).hexdigest())


def reused(key: str, claim: Claim) -> IdempotencyKeyReused:
    """What a key used again with another request gets (nothing was enqueued): a
    FAILED_PRECONDITION of type REUSED on FIELD."""
    return IdempotencyKeyReused(
        f"idempotency_key {key!r} was used for report {claim.report_id} with a different "
        "request; send that same request again to get that report, or use a new key",
        key=key,
    )


class ClaimStore:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table_name: str,
        *,
        region: str,
        lean: AwsJsonClient | None = None,
    ) -> None:
        self._ddb = dynamodb
        self._table = table_name
        self._region = region
        self._lean = lean
        self._head = put_claim_head(table_name)
        # Claims go through aiobotocore until one got an answer (see the module docstring).
        self._judged = False
        self.releases_failed = 0  # counted for the metrics and tests; each is logged

    async def claim(
        self,
        tenant: str,
        key: str,
        fingerprint: str,
        *,
        report_id: str,
        created_ms: int,
        deadline: float | None,
    ) -> Claimed:
        """Claim `key` for `report_id`, or the claim an earlier call made."""
        ours = Claim(
            report_id=report_id,
            fingerprint=fingerprint,
            created_ms=created_ms,
            region=self._region,
            expires_at=created_ms // 1000 + KEY_LIFETIME_SECONDS,
        )
        pk = claim_key(tenant, key)
        now = int(time.time())
        if self._lean is not None and self._judged:
            body = put_claim_body(self._head, pk, ours, now)
            written, found = await self._put_lean(body, deadline)
        else:
            values = {":now": {"N": str(now)}}
            written, found = await self._put_botocore(claim_item(pk, ours), values, deadline)
        if written:
            return Claimed(ours, fresh=True)
        existing = _claim_of(found if found is not None else await self._read(pk, deadline))
        return Claimed(existing, fresh=existing.report_id == report_id)

    async def release(self, tenant: str, key: str, report_id: str, deadline: float | None) -> None:
        """Remove our claim when its task was certainly not written (best effort; never
        after a failed enqueue, whose task may be written): only if it still names
        `report_id`, so a later call's claim is never removed."""
        try:
            await bounded(
                self._ddb.delete_item(
                    TableName=self._table,
                    Key={k: {"S": v} for k, v in claim_key(tenant, key).items()},
                    ConditionExpression="#rid = :rid",
                    ExpressionAttributeNames={"#rid": "report_id"},
                    ExpressionAttributeValues={":rid": {"S": report_id}},
                ),
                deadline,
                "the report store",
            )
        except (ClientError, BotoCoreError, OSError, Unavailable) as err:
            # Never the call's failure (BotoCoreError: no answer at all, e.g. the endpoint
            # unreachable). Kept, it makes a retry of the same request enqueue this id again
            # and a different request under the key get FAILED_PRECONDITION until it expires.
            self.releases_failed += 1
            logger.warning("idempotency claim not released", extra={"error": type(err).__name__})

    async def _put_botocore(self, item: Item, values: Item, deadline: float | None) -> _Put:
        try:
            await bounded(
                self._ddb.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression=_CONDITION,
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
                deadline,
                "the report store",
            )
        except BotoCoreError:  # no answer at all (connection refused, endpoint down)
            raise _unavailable("") from None
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                raise _unavailable(err.response.get("Error", {}).get("Code", "")) from None
            self._judged = True
            found: Item | None = err.response.get("Item")  # type: ignore[assignment]
            return False, found or None
        self._judged = True
        return True, None

    async def _put_lean(self, body: bytes, deadline: float | None) -> _Put:
        assert self._lean is not None
        error_type = ""
        for attempt in range(_ATTEMPTS):
            try:
                # The call's own timer bounds it (not wait_for, grpc_edge/store.py bounded:
                # no task and no second timer per call on the hot path).
                status, answer = await self._lean.call(PUT_ITEM, JSON_1_0, body, deadline=deadline)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
                error_type = type(err).__name__
            else:
                if status == 200:
                    return True, None
                error_type, _, doc = error_of(answer)
                if error_type == _CONDITION_FAILED:
                    return False, doc.get("Item") or None
                if status < 500 and error_type not in _THROTTLED:
                    break  # not worth repeating
            if attempt + 1 < _ATTEMPTS:
                # Jittered backoff as botocore's standard retry mode; a repeat that lands
                # twice shows us our own claim.
                delay = random.uniform(0, 0.05 * 2**attempt)  # noqa: S311 -- jitter
                if deadline is not None and time.monotonic() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
        raise _unavailable(error_type)

    async def _read(self, pk: dict[str, str], deadline: float | None) -> Item:
        """The claim, read consistently: only when a condition failed and the answer did
        not carry the item (an endpoint without ReturnValuesOnConditionCheckFailure)."""
        try:
            answer = await bounded(
                self._ddb.get_item(
                    TableName=self._table,
                    Key={k: {"S": v} for k, v in pk.items()},
                    ConsistentRead=True,
                ),
                deadline,
                "the report store",
            )
        except BotoCoreError:
            raise _unavailable("") from None
        except ClientError as err:
            raise _unavailable(err.response.get("Error", {}).get("Code", "")) from None
        found: Item | None = answer.get("Item")
        if found is None:
            # Released or swept between our write and this read: the caller's retry
            # claims it afresh.
            raise Unavailable("the idempotency key's claim changed while it was read; retry")
        return found


def _claim_of(item: Item) -> Claim:
    try:
        return Claim(
            report_id=item["report_id"]["S"],
            fingerprint=item["fingerprint"]["S"],
            created_ms=int(item["created_ms"]["N"]),
            region=item["region"]["S"],
            expires_at=int(item[resources.TTL_ATTRIBUTE]["N"]),
        )
    except (KeyError, TypeError, ValueError):
        raise Unavailable("the idempotency key's claim could not be read; retry") from None


def _unavailable(code: str) -> Unavailable:
    """A client-facing message, as grpc_edge/store.py words them (never AWS's text)."""
    cause = "the report store is throttling requests" if code in _THROTTLED else "it failed"
    return Unavailable(f"claiming the idempotency key failed: {cause}; retry")
