"""The report items in DynamoDB, as the edge reads and writes them (aioboto3, low-level
item format of reportgrid.records). ClientErrors become Reportgrid errors here.

Deleting a report leaves a tombstone: the item is replaced by
    {pk, report_id, tenant, deleted: true, expires_at}
with no `state` and no tenant-index attributes, kept until the report's task can no longer
be in the task log. So a task still queued for a deleted report cannot bring it back (every
worker write is conditional on `attribute_not_exists(pk)` or on `state`, and a tombstone has
a key and no state), and GetReport answers NOT_FOUND instead of PENDING.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

from botocore.exceptions import ClientError

from reportgrid import records, resources
from reportgrid.errors import Conflict, Unavailable
from reportgrid.records import Item, ReportRecord
from reportgrid.states import Condition, State, transition_condition

T = TypeVar("T")

A_DELETED: Final = "deleted"
# A tombstone outlives any task that could still name its report.
TOMBSTONE_SECONDS: Final = (resources.TASK_RETENTION_HOURS + 1) * 3600
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


def is_tombstone(item: Item) -> bool:
    return bool(item.get(A_DELETED, {}).get("BOOL")) and records.A_STATE not in item


async def bounded(awaitable: Awaitable[T], deadline: float | None, what: str) -> T:
    """Await a store call within the caller's deadline (a time.monotonic() value)."""
    if deadline is None:
        return await awaitable
    remaining = deadline - time.monotonic()
    try:
        return await asyncio.wait_for(awaitable, max(0.001, remaining))
    except TimeoutError:
        raise Unavailable(f"{what} did not answer in time; retry") from None


_THROTTLED: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


def _unavailable(err: ClientError, what: str) -> Unavailable:
    """A client-facing message: says what failed and whether it was throttling, never the
    AWS error text (the interceptor logs this message; the code is in AWS's own logs)."""
    code = err.response.get("Error", {}).get("Code", "")
    cause = "the report store is throttling requests" if code in _THROTTLED else "it failed"
    return Unavailable(f"{what} failed: {cause}; retry")


class ReportStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._ddb = dynamodb
        self._table = table_name

    def _key(self, report_id: str) -> Item:
        return {k: {"S": v} for k, v in resources.report_key(report_id).items()}

    async def get(
        self, report_id: str, *, consistent: bool = False, deadline: float | None = None
    ) -> Item | None:
        try:
            response = await bounded(
                self._ddb.get_item(
                    TableName=self._table, Key=self._key(report_id), ConsistentRead=consistent
                ),
                deadline,
                "the report store",
            )
        except ClientError as err:
            raise _unavailable(err, "reading the report") from None
        item: Item | None = response.get("Item")
        return item

    async def query_tenant_shard(
        self,
        tenant: str,
        shard: int,
        *,
        low: str,
        high: str,
        limit: int,
        start_key: Item | None,
        deadline: float | None,
    ) -> tuple[list[Item], Item | None]:
        """One page of a tenant-index shard, newest first, sort keys in [low, high]."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": resources.TENANT_INDEX_NAME,
            "KeyConditionExpression": "#p = :p AND #s BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {
                "#p": resources.TENANT_INDEX_PARTITION_KEY,
                "#s": resources.TENANT_INDEX_SORT_KEY,
            },
            "ExpressionAttributeValues": {
                ":p": {"S": resources.tenant_shard(tenant, shard)},
                ":lo": {"S": low},
                ":hi": {"S": high},
            },
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if start_key is not None:
            kwargs["ExclusiveStartKey"] = start_key
        try:
            response = await bounded(self._ddb.query(**kwargs), deadline, "the report index")
        except ClientError as err:
            raise _unavailable(err, "listing reports") from None
        return response.get("Items", []), response.get("LastEvaluatedKey")

    async def create_cancelled_placeholder(
        self, record: ReportRecord, *, deadline: float | None
    ) -> bool:
        """Write a minimal PENDING record with cancel_requested for a report whose task is
        still queued. False if some record appeared meanwhile."""
        condition = "attribute_not_exists(#key)"
        try:
            await bounded(
                self._ddb.put_item(
                    TableName=self._table,
                    Item=records.to_item(record),
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#key": resources.PARTITION_KEY},
                ),
                deadline,
                "the report store",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return False
            raise _unavailable(err, "cancelling the report") from None
        return True

    async def request_cancel(
        self, record: ReportRecord, *, deadline: float | None
    ) -> ReportRecord | None:
        """Set cancel_requested on a live report, if it is still at the revision we read and
        a cancellation is still legal. None if the condition failed (re-read and retry)."""
        condition = transition_condition(State.CANCELLED).and_(
            Condition(
                "#rev = :rev",
                {"#rev": records.A_REVISION},
                {":rev": {"N": str(record.revision)}},
            )
        )
        try:
            response = await bounded(
                self._ddb.update_item(
                    TableName=self._table,
                    Key=self._key(record.report_id),
                    UpdateExpression="SET #cancel = :true, #rev = #rev + :one",
                    ConditionExpression=condition.expression,
                    ExpressionAttributeNames={**condition.names, "#cancel": records.A_CANCEL},
                    ExpressionAttributeValues={
                        **condition.values,
                        ":true": {"BOOL": True},
                        ":one": {"N": "1"},
                    },
                    ReturnValues="ALL_NEW",
                ),
                deadline,
                "the report store",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return None
            raise _unavailable(err, "cancelling the report") from None
        return records.from_item(response["Attributes"])

    async def put_tombstone(self, report_id: str, tenant: str, *, deadline: float | None) -> None:
        item: Item = {
            **self._key(report_id),
            "report_id": {"S": report_id},
            "tenant": {"S": tenant},
            A_DELETED: {"BOOL": True},
            resources.TTL_ATTRIBUTE: {"N": str(int(time.time()) + TOMBSTONE_SECONDS)},
        }
        try:
            await bounded(
                self._ddb.put_item(TableName=self._table, Item=item),
                deadline,
                "the report store",
            )
        except ClientError as err:
            raise _unavailable(err, "deleting the report") from None

    async def ping(self) -> None:
        """A cheap read that proves the table answers (health)."""
        await self._ddb.get_item(TableName=self._table, Key=self._key("health-probe"))


def conflict() -> Conflict:
    return Conflict("the report changed while the call ran; retry")
