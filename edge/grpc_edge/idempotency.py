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
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from grpc_edge.aws_json import JSON_1_0, AwsJsonClient, error_of
from grpc_edge.store import bounded
from reportgrid import claims, errors, resources
from reportgrid.errors import Unavailable

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient

logger = Logger(service="reportgrid-edge", child=True)

PUT_ITEM: Final = "DynamoDB_20120810.PutItem"
# The claim's one definition is reportgrid/claims.py (the scheduler claims fires' keys
# alike); these names stay here for the edge's callers.
KEY_LIFETIME_SECONDS: Final = claims.KEY_LIFETIME_SECONDS
Claim = claims.Claim
Fingerprint = claims.Fingerprint
fingerprint = claims.fingerprint
claim_item = claims.claim_item
claim_key = claims.claim_key
reused = claims.reused
# The PreconditionFailure type of a key reused with another request.
REUSED: Final = errors.IDEMPOTENCY_KEY_REUSED
FIELD: Final = "idempotency_key"
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_THROTTLED: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_ATTEMPTS: Final = 3  # as the aiobotocore DynamoDB client's (clients.py)
_CONDITION: Final = claims.CONDITION
_NAMES: Final = claims.NAMES

Item = dict[str, Any]
# (written, the item that failed the condition: None when written, or when the answer did
# not carry it)
_Put = tuple[bool, Item | None]


@dataclass(frozen=True, slots=True)
class Claimed:
    claim: Claim
    fresh: bool  # this call made the claim: its report is new


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
        ours = claims.new_claim(report_id, fingerprint, created_ms=created_ms, region=self._region)
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
        existing = claims.claim_of(found if found is not None else await self._read(pk, deadline))
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


def _unavailable(code: str) -> Unavailable:
    """A client-facing message, as grpc_edge/store.py words them (never AWS's text)."""
    cause = "the report store is throttling requests" if code in _THROTTLED else "it failed"
    return Unavailable(f"claiming the idempotency key failed: {cause}; retry")
