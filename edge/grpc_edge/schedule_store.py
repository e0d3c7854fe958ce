"""The schedule items as the edge writes them (reportgrid/schedules/items.py holds their one
definition): a schedule item, its due item while it is active, and the tenant's schedule
counter, always moved together in one TransactWriteItems.

IAM authorizes a transaction as its parts (PutItem, UpdateItem, DeleteItem,
ConditionCheckItem on the table), so the edge's table read/write grant covers it:
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html

Every key is built from the caller's tenant: another tenant's schedule id names an item
that does not exist, so it is NOT_FOUND like a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from grpc_edge.store import bounded
from reportgrid import resources
from reportgrid.errors import Conflict, ResourceExhausted, Unavailable
from reportgrid.schedules import items
from reportgrid.schedules.items import Schedule

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import QueryInputTypeDef, TransactWriteItemTypeDef

_CANCELLED: Final = "TransactionCanceledException"
_CONDITION_FAILED: Final = "ConditionalCheckFailed"
# A client that is over its cap may try again after deleting one; nothing frees by itself.
_CAP_RETRY_SECONDS: Final = 60.0


class StaleVersion(Exception):
    """The schedule item was not at the version a write was conditioned on (or is gone)."""


def _failed(what: str) -> Unavailable:
    # Never the AWS error text: the interceptor logs this message for the client.
    return Unavailable(f"{what} failed; retry")


def _reasons(err: ClientError) -> list[str]:
    """The transaction's cancellation reason codes, one per action ("None" for a fine one)."""
    found = err.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in found]


class ScheduleStore:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._ddb = dynamodb
        self._table = table_name

    async def get(self, tenant: str, schedule_id: str, *, deadline: float) -> Schedule | None:
        """The schedule, strongly consistent in this region; None when there is none."""
        try:
            response = await bounded(
                self._ddb.get_item(
                    TableName=self._table,
                    Key=items.schedule_key(tenant, schedule_id),
                    ConsistentRead=True,
                ),
                deadline,
                "the schedule store",
            )
        except ClientError:
            raise _failed("reading the schedule") from None
        item = response.get("Item")
        return None if item is None else items.from_item(item)

    async def create(self, schedule: Schedule, *, deadline: float) -> None:
        """Write a new schedule (and its due item if it is active), counting it against the
        tenant's cap; ResourceExhausted when the tenant is at the cap."""
        actions: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": dict(items.to_item(schedule)),
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": resources.PARTITION_KEY},
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": dict(items.count_key(schedule.tenant)),
                    "UpdateExpression": "ADD #n :one",
                    "ConditionExpression": "attribute_not_exists(#n) OR #n < :max",
                    "ExpressionAttributeNames": {"#n": items.A_COUNT},
                    "ExpressionAttributeValues": {
                        ":one": {"N": "1"},
                        ":max": {"N": str(resources.MAX_SCHEDULES_PER_TENANT)},
                    },
                }
            },
        ]
        if schedule.active:
            actions.append({"Put": {"TableName": self._table, "Item": items.due_item(schedule)}})
        try:
            await self._transact(actions, deadline)
        except ClientError as err:
            reasons = _reasons(err)
            if len(reasons) > 1 and reasons[1] == _CONDITION_FAILED:
                raise ResourceExhausted(
                    f"the tenant has {resources.MAX_SCHEDULES_PER_TENANT} schedules, the most "
                    "it may have; delete one first",
                    retry_after=_CAP_RETRY_SECONDS,
                    subject="schedules",
                ) from None
            if reasons and reasons[0] == _CONDITION_FAILED:
                # A fresh random id already taken: 80 random bits make this a defect.
                raise Conflict("the new schedule id was taken; retry") from None
            raise self._error(err, "creating the schedule") from None

    async def replace(self, before: Schedule, after: Schedule, *, deadline: float) -> None:
        """Write `after` over `before` if the stored item is still at `before.version`, and
        file its due item under its next fire, or delete it when `after` is not active.
        StaleVersion when the item changed (or went) in between."""
        actions: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": dict(items.to_item(after)),
                    "ConditionExpression": "#v = :v",
                    "ExpressionAttributeNames": {"#v": items.A_VERSION},
                    "ExpressionAttributeValues": {":v": {"N": str(before.version)}},
                }
            }
        ]
        if after.active:
            actions.append({"Put": {"TableName": self._table, "Item": items.due_item(after)}})
        else:
            due = items.due_key(after.tenant, after.schedule_id)
            actions.append({"Delete": {"TableName": self._table, "Key": dict(due)}})
        await self._conditional(actions, deadline, "changing the schedule")

    async def delete(self, schedule: Schedule, *, deadline: float) -> None:
        """Delete the schedule at `schedule.version`, its due item, and its count."""
        tenant, sid = schedule.tenant, schedule.schedule_id
        actions: list[TransactWriteItemTypeDef] = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": dict(items.schedule_key(tenant, sid)),
                    "ConditionExpression": "#v = :v",
                    "ExpressionAttributeNames": {"#v": items.A_VERSION},
                    "ExpressionAttributeValues": {":v": {"N": str(schedule.version)}},
                }
            },
            {"Delete": {"TableName": self._table, "Key": dict(items.due_key(tenant, sid))}},
            {
                # Never below zero (nor created at -1): a counter that lost an increment to
                # a cross-region race (the global table keeps the last writer's item) must
                # not go negative. A missing count fails this too; see the fallback below.
                "Update": {
                    "TableName": self._table,
                    "Key": dict(items.count_key(tenant)),
                    "UpdateExpression": "ADD #n :minus",
                    "ConditionExpression": "#n > :zero",
                    "ExpressionAttributeNames": {"#n": items.A_COUNT},
                    "ExpressionAttributeValues": {":minus": {"N": "-1"}, ":zero": {"N": "0"}},
                }
            },
        ]
        try:
            await self._transact(actions, deadline)
        except ClientError as err:
            reasons = _reasons(err)
            if reasons and reasons[0] == _CONDITION_FAILED:
                raise StaleVersion from None
            if len(reasons) > 2 and reasons[2] == _CONDITION_FAILED:
                # The counter is zero or missing: delete without touching it.
                await self._conditional(actions[:2], deadline, "deleting the schedule")
                return
            raise self._error(err, "deleting the schedule") from None

    async def page(
        self, tenant: str, *, before: str | None, limit: int, deadline: float
    ) -> tuple[list[Schedule], str | None]:
        """Up to `limit` of the tenant's schedules, newest first, with sort keys below
        `before` (None: from the newest); and the last one's sort key when more may follow."""
        names = {"#p": resources.TENANT_INDEX_PARTITION_KEY}
        values: dict[str, Any] = {":p": {"S": items.list_partition(tenant)}}
        condition = "#p = :p"
        if before is not None:
            # Every name given must be used, or DynamoDB refuses the query.
            names["#s"] = resources.TENANT_INDEX_SORT_KEY
            condition += " AND #s < :before"
            values[":before"] = {"S": before}
        kwargs: QueryInputTypeDef = {
            "TableName": self._table,
            "IndexName": resources.TENANT_INDEX_NAME,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": limit,
        }
        try:
            response = await bounded(self._ddb.query(**kwargs), deadline, "the schedule index")
        except ClientError:
            raise _failed("listing schedules") from None
        found = response.get("Items", [])
        schedules = [items.from_item(item) for item in found]
        last = response.get("LastEvaluatedKey")
        if last is None or not found:
            return schedules, None
        return schedules, str(found[-1][resources.TENANT_INDEX_SORT_KEY]["S"])

    async def _conditional(
        self, actions: Sequence[TransactWriteItemTypeDef], deadline: float, what: str
    ) -> None:
        try:
            await self._transact(actions, deadline)
        except ClientError as err:
            reasons = _reasons(err)
            if reasons and reasons[0] == _CONDITION_FAILED:
                raise StaleVersion from None
            raise self._error(err, what) from None

    async def _transact(self, actions: Sequence[TransactWriteItemTypeDef], deadline: float) -> None:
        await bounded(
            self._ddb.transact_write_items(TransactItems=list(actions)),
            deadline,
            "the schedule store",
        )

    def _error(self, err: ClientError, what: str) -> Exception:
        code = err.response.get("Error", {}).get("Code", "")
        if code == _CANCELLED and "TransactionConflict" in _reasons(err):
            # Another transaction on the same items was in flight: a race, not an outage.
            return Conflict(f"{what} raced a concurrent change; retry")
        return _failed(what)
