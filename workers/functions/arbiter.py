"""Who may run a report, decided on a multi-Region strongly consistent (MRSC) table.

The reports table is a last-writer-wins global table: a condition there is checked against
the local replica only, so two regions can both "win" a claim while replication lags. On an
MRSC global table (three replicas, or two and a witness, in one region set) a conditional
write is checked against the latest value in every region: one writer wins, the others get
ConditionalCheckFailedException, whatever the lag of the reports table
(docs/MULTI_REGION.md "Exactly-once failover"). So ReportStore asks this arbiter before every
claim, renewal and terminal write, and writes the report item only when it holds the lease:

- `acquire`: take the lease when nobody holds it, when it ran out, or when we hold it
  already; refused once the report is `done`;
- `renew`: extend our lease; fails when someone else took it;
- `complete`: mark the report done, with the terminal report item it is about to write,
  only while we hold it. After that no region can acquire it again, so no second run ever
  reaches its terminal write; and a worker that dies between `complete` and its write to
  the reports table leaves the outcome here, so whoever finds the report done next writes
  it forward (ReportStore) instead of leaving it RUNNING;
- `release`: give the lease up early (best effort).

Items are `{pk: lease#<report id>, owner, until_ms[, done, outcome]}` (`outcome`: the
terminal report item as a map; an inline result makes it at most ~310 KB of DynamoDB's
400 KB, limits.MAX_INLINE_RESULT_BYTES). Only conditional PutItem,
UpdateItem and strongly consistent GetItem are used: no transactions and no TTL, which MRSC
tables do not offer (AWS developer guide, "Multi-Region strong consistency" considerations).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import resources
from reportgrid.errors import Unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

log = logging.getLogger(__name__)

KEY_PREFIX: Final = "lease#"
A_OWNER: Final = "owner"
A_UNTIL: Final = "until_ms"
A_DONE: Final = "done"
A_OUTCOME: Final = "outcome"
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
# MRSC answers a write that races a write of the same item from another region with
# ReplicatedWriteConflictException ("retry"): the race has one winner, we try again.
_RETRYABLE: Final = frozenset(
    {
        "ReplicatedWriteConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class Grant:
    """What `acquire` found."""

    held: bool  # we hold the lease now
    done: bool = False  # a run completed the report: nothing may run it again
    holder: str = ""
    until_ms: int = 0  # when the holder's lease runs out (epoch ms)
    outcome: dict[str, Any] | None = None  # when done: the terminal report item written


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LeaseArbiter:
    def __init__(
        self,
        ddb: DynamoDBClient,
        table_name: str,
        *,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._ddb = ddb
        self._table = table_name
        self._clock = clock

    def acquire(self, report_id: str, *, owner: str, lease_seconds: float) -> Grant:
        now = self._clock()
        until = now + int(lease_seconds * 1000)
        ok = self._write(
            "put",
            report_id,
            item={A_OWNER: {"S": owner}, A_UNTIL: {"N": str(until)}},
            condition=(
                "attribute_not_exists(#pk) OR (attribute_not_exists(#done) AND "
                "(#owner = :me OR #until < :now))"
            ),
            values={":me": {"S": owner}, ":now": {"N": str(now)}},
        )
        if ok:
            return Grant(held=True, holder=owner, until_ms=until)
        item = self._get(report_id) or {}
        return Grant(
            held=False,
            done=A_DONE in item,
            holder=item.get(A_OWNER, {}).get("S", ""),
            until_ms=int(item.get(A_UNTIL, {}).get("N", "0")),
            outcome=item.get(A_OUTCOME, {}).get("M"),
        )

    def renew(self, report_id: str, *, owner: str, lease_seconds: float) -> bool:
        until = self._clock() + int(lease_seconds * 1000)
        return self._write(
            "update",
            report_id,
            update="SET #until = :until",
            condition="#owner = :me AND attribute_not_exists(#done)",
            values={":me": {"S": owner}, ":until": {"N": str(until)}},
        )

    def complete(self, report_id: str, *, owner: str, outcome: dict[str, Any]) -> bool:
        """Mark the report done with `outcome`, the terminal report item about to be
        written. True when it is done by us (now or by an earlier call whose reply was lost;
        a second call replaces the outcome); False when someone else holds or completed it."""
        return self._write(
            "update",
            report_id,
            update="SET #done = :true, #outcome = :outcome",
            condition="#owner = :me",
            values={":me": {"S": owner}, ":true": {"BOOL": True}, ":outcome": {"M": outcome}},
        )

    def release(self, report_id: str, *, owner: str) -> None:
        try:
            self._write(
                "update",
                report_id,
                update="SET #until = :zero",
                condition="#owner = :me AND attribute_not_exists(#done)",
                values={":me": {"S": owner}, ":zero": {"N": "0"}},
            )
        except Unavailable:
            log.warning("could not release the arbiter lease on %s", report_id)

    # -- DynamoDB ---------------------------------------------------------------------

    def _key(self, report_id: str) -> dict[str, Any]:
        return {resources.PARTITION_KEY: {"S": KEY_PREFIX + report_id}}

    def _get(self, report_id: str) -> dict[str, Any] | None:
        for attempt in range(_ATTEMPTS):
            try:
                reply = self._ddb.get_item(
                    TableName=self._table, Key=self._key(report_id), ConsistentRead=True
                )
                return dict(reply.get("Item") or {}) or None
            except (ClientError, BotoCoreError) as err:
                self._retry_or_raise(err, attempt)
        raise AssertionError("unreachable")

    def _write(
        self,
        kind: str,
        report_id: str,
        *,
        condition: str,
        values: dict[str, Any],
        item: dict[str, Any] | None = None,
        update: str = "",
    ) -> bool:
        names = {"#pk": resources.PARTITION_KEY, "#owner": A_OWNER, "#until": A_UNTIL}
        names["#done"] = A_DONE
        names["#outcome"] = A_OUTCOME
        used = {n: a for n, a in names.items() if n in condition or n in update}
        for attempt in range(_ATTEMPTS):
            try:
                if kind == "put":
                    self._ddb.put_item(
                        TableName=self._table,
                        Item={**self._key(report_id), **(item or {})},
                        ConditionExpression=condition,
                        ExpressionAttributeNames=used,
                        ExpressionAttributeValues=values,
                    )
                else:
                    self._ddb.update_item(
                        TableName=self._table,
                        Key=self._key(report_id),
                        UpdateExpression=update,
                        ConditionExpression=condition,
                        ExpressionAttributeNames=used,
                        ExpressionAttributeValues=values,
                    )
                return True
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                    # A retry after a lost reply fails its condition only if the write
                    # was not ours, except acquire/complete by the same owner, which the
                    # conditions accept again.
                    return False
                self._retry_or_raise(err, attempt)
            except BotoCoreError as err:
                self._retry_or_raise(err, attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _retry_or_raise(err: BaseException, attempt: int) -> None:
        code = err.response.get("Error", {}).get("Code", "") if isinstance(err, ClientError) else ""
        transient = not isinstance(err, ClientError) or code in _RETRYABLE
        if not transient or attempt == _ATTEMPTS - 1:
            log.warning("the lease arbiter did not answer: %s", code or err)
            raise Unavailable("the lease arbiter did not answer") from None
        time.sleep(0.05 * 2**attempt)
