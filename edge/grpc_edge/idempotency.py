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
calls, a release after a failed enqueue and the consistent read of a claim an emulator
did not return, go through aiobotocore.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from grpc_edge.aws_json import JSON_1_0, AwsJsonClient, error_of
from grpc_edge.store import bounded
from reportgrid import resources
from reportgrid.errors import FailedPrecondition, Unavailable
from reportgrid.v1 import reports_pb2 as pb

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient

logger = Logger(service="reportgrid-edge", child=True)

PUT_ITEM: Final = "DynamoDB_20120810.PutItem"
KEY_LIFETIME_SECONDS: Final = resources.IDEMPOTENCY_KEY_HOURS * 3600
# The PreconditionFailure type of a key reused with another request.
REUSED: Final = "IDEMPOTENCY_KEY_REUSED"
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


def fingerprint(request: pb.SubmitReportRequest) -> str:
    """SHA-256 of the request as sent, without its idempotency key: deterministic
    serialization writes map entries (Struct fields, labels) sorted by key, so equal
    requests give equal bytes whatever order their maps were built in. Every field counts,
    including ones added later. Call it before anything fills defaults in (quotas)."""
    key = request.idempotency_key
    request.idempotency_key = ""
    try:
        data = request.SerializeToString(deterministic=True)
    finally:
        request.idempotency_key = key
    return hashlib.sha256(data).hexdigest()


def claim_key(tenant: str, key: str) -> dict[str, str]:
    return resources.idempotency_claim_key(tenant, hashlib.sha256(key.encode()).hexdigest())


def reused(key: str, claim: Claim) -> FailedPrecondition:
    """What a key used again with another request gets (nothing was enqueued)."""
    return FailedPrecondition(
        FIELD,
        f"idempotency_key {key!r} was used for report {claim.report_id} with a different "
        "request; send that same request again to get that report, or use a new key",
        type_=REUSED,
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
        # Claims go through aiobotocore until one got an answer (see the module docstring).
        self._judged = False

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
        item = {
            **{k: {"S": v} for k, v in pk.items()},
            "report_id": {"S": ours.report_id},
            "fingerprint": {"S": ours.fingerprint},
            "created_ms": {"N": str(ours.created_ms)},
            "region": {"S": ours.region},
            resources.TTL_ATTRIBUTE: {"N": str(ours.expires_at)},
        }
        values = {":now": {"N": str(int(time.time()))}}
        if self._lean is not None and self._judged:
            written, found = await self._put_lean(item, values, deadline)
        else:
            written, found = await self._put_botocore(item, values, deadline)
        if written:
            return Claimed(ours, fresh=True)
        existing = _claim_of(found if found is not None else await self._read(pk, deadline))
        return Claimed(existing, fresh=existing.report_id == report_id)

    async def release(self, tenant: str, key: str, report_id: str, deadline: float | None) -> None:
        """Remove our claim after its enqueue failed (best effort): only if it still names
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
        except (ClientError, Unavailable) as err:
            # Kept, it makes a retry of the same request enqueue this id again and a
            # different request under the key get FAILED_PRECONDITION until it expires.
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
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                raise _unavailable(err.response.get("Error", {}).get("Code", "")) from None
            self._judged = True
            found: Item | None = err.response.get("Item")  # type: ignore[assignment]
            return False, found or None
        self._judged = True
        return True, None

    async def _put_lean(self, item: Item, values: Item, deadline: float | None) -> _Put:
        assert self._lean is not None
        body = json.dumps(
            {
                "TableName": self._table,
                "Item": item,
                "ConditionExpression": _CONDITION,
                "ExpressionAttributeNames": _NAMES,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
            separators=(",", ":"),
        ).encode()
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
