"""The report store as the edge uses it (aioboto3, low-level item format of
reportgrid.records). ClientErrors become Reportgrid errors here.

The edge never writes the report item: workers own it. The edge writes the user's intents,
each an item of its own (reportgrid/intents.py): a cancel request (`cancel#<id>`) and, for
a deleted report, a tombstone (`deleted#<id>`) before it removes the report item. Every
read takes the report with its intents in one BatchGetItem, so a report with a tombstone is
NOT_FOUND whatever the report item says (docs/MULTI_REGION.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from botocore.exceptions import ClientError

from reportgrid import intents, records, resources
from reportgrid.errors import Unavailable
from reportgrid.intents import Snapshot
from reportgrid.records import Item, ReadItem

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef, QueryInputTypeDef

    # Where a query page ended: handed back unchanged to start the next one.
    StartKey = dict[str, AttributeValueTypeDef]

T = TypeVar("T")

_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
# BatchGetItem takes at most this many keys per call.
_BATCH_KEYS: Final = 100
_BATCH_ATTEMPTS: Final = 5


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
    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._ddb = dynamodb
        self._table = table_name

    def _key(self, report_id: str) -> Item:
        return {k: {"S": v} for k, v in resources.report_key(report_id).items()}

    async def read(
        self, report_id: str, *, consistent: bool = False, deadline: float | None = None
    ) -> Snapshot:
        """The report item with its cancel request and tombstone (one BatchGetItem)."""
        found = await self._batch_get(
            intents.report_keys(report_id), consistent, deadline, "reading the report"
        )
        return intents.snapshots([report_id], found)[report_id]

    async def intents_of(
        self, report_ids: Sequence[str], *, deadline: float | None
    ) -> dict[str, Snapshot]:
        """The intents (no report items) of a page of reports, by report id."""
        keys = [key for rid in report_ids for key in intents.intent_keys(rid)]
        chunks = [keys[i : i + _BATCH_KEYS] for i in range(0, len(keys), _BATCH_KEYS)]
        pages = await asyncio.gather(
            *(self._batch_get(chunk, False, deadline, "listing reports") for chunk in chunks)
        )
        return intents.snapshots(report_ids, [item for page in pages for item in page])

    async def _batch_get(
        self, keys: Sequence[ReadItem], consistent: bool, deadline: float | None, doing: str
    ) -> list[ReadItem]:
        items: list[ReadItem] = []
        for attempt in range(_BATCH_ATTEMPTS):
            try:
                response = await bounded(
                    self._ddb.batch_get_item(
                        RequestItems=intents.request_items(self._table, keys, consistent=consistent)
                    ),
                    deadline,
                    "the report store",
                )
            except ClientError as err:
                raise _unavailable(err, doing) from None
            items += response.get("Responses", {}).get(self._table, [])
            unprocessed = response.get("UnprocessedKeys", {}).get(self._table)
            keys = [] if unprocessed is None else unprocessed.get("Keys", [])
            if not keys:
                return items
            await asyncio.sleep(0.02 * 2**attempt)  # unprocessed keys: the table throttles
        raise Unavailable(f"{doing} failed: the report store is throttling requests; retry")

    async def query_tenant_shard(
        self,
        tenant: str,
        shard: int,
        *,
        low: str,
        high: str,
        limit: int,
        start_key: StartKey | None,
        deadline: float | None,
        labels: Sequence[tuple[str, str]] = (),
    ) -> tuple[Sequence[ReadItem], StartKey | None]:
        """One page of a tenant-index shard, newest first, sort keys in [low, high], only
        items carrying every (key, value) of `labels`. `Limit` counts the items read
        before the filter, so a page may hold fewer (or none) with more to come."""
        names = {"#p": resources.TENANT_INDEX_PARTITION_KEY, "#s": resources.TENANT_INDEX_SORT_KEY}
        values: dict[str, AttributeValueTypeDef] = {
            ":p": {"S": resources.tenant_shard(tenant, shard)},
            ":lo": {"S": low},
            ":hi": {"S": high},
        }
        kwargs: QueryInputTypeDef = {
            "TableName": self._table,
            "IndexName": resources.TENANT_INDEX_NAME,
            "KeyConditionExpression": "#p = :p AND #s BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if labels:
            # Every user-given key and value travels as a placeholder (#lN / :lN), never in
            # the expression text; "#lb.#l0" is the document path labels.<key>.
            # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ExpressionAttributeNames.html
            names["#lb"] = records.A_LABELS
            terms = []
            for i, (key, value) in enumerate(labels):
                names[f"#l{i}"] = key
                values[f":l{i}"] = {"S": value}
                terms.append(f"#lb.#l{i} = :l{i}")
            kwargs["FilterExpression"] = " AND ".join(terms)
        if start_key is not None:
            kwargs["ExclusiveStartKey"] = start_key
        try:
            response = await bounded(self._ddb.query(**kwargs), deadline, "the report index")
        except ClientError as err:
            raise _unavailable(err, "listing reports") from None
        return response.get("Items", []), response.get("LastEvaluatedKey")

    async def put_cancel(
        self, report_id: str, tenant: str, *, created_ms: int | None, deadline: float | None
    ) -> None:
        """Record the cancel request. Idempotent: the first request's time is kept."""
        item = intents.cancel_item(
            report_id, tenant, requested_ms=time.time_ns() // 1_000_000, created_ms=created_ms
        )
        try:
            await bounded(
                self._ddb.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#key)",
                    ExpressionAttributeNames={"#key": resources.PARTITION_KEY},
                ),
                deadline,
                "the report store",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return  # requested before
            raise _unavailable(err, "cancelling the report") from None

    async def delete_report(self, report_id: str, tenant: str, *, deadline: float | None) -> None:
        """The tombstone first (from then on every reader and worker sees the report
        deleted), then the report item."""
        tombstone = intents.tombstone_item(
            report_id, tenant, deleted_ms=time.time_ns() // 1_000_000
        )
        try:
            await bounded(
                self._ddb.put_item(TableName=self._table, Item=tombstone),
                deadline,
                "the report store",
            )
            await bounded(
                self._ddb.delete_item(TableName=self._table, Key=self._key(report_id)),
                deadline,
                "the report store",
            )
        except ClientError as err:
            raise _unavailable(err, "deleting the report") from None

    async def ping(self) -> None:
        """A cheap read that proves the table answers (health)."""
        await self._ddb.get_item(TableName=self._table, Key=self._key("health-probe"))
