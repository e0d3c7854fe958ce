"""The workers' report store: a sync boto3 DynamoDB adapter for the report item.

Only workers write the report item. Every write is a full put of the new record under a
condition built from the one state machine (`transition_condition`) AND the revision the
writer read (optimistic concurrency: every write bumps `revision`, so a stale writer always
loses). Lease writes add the holder. When a write's reply is lost, the retry's condition
fails; the store then re-reads and recognises its own write by `lease_owner` and
`revision` instead of reporting a conflict.

The user's intents (cancel, delete) are separate items that only the edge writes
(reportgrid/intents.py). They are read with the report (`read`, one BatchGetItem) before a
run starts, at every lease renewal and before the terminal write; a report with a
tombstone is never written again (docs/MULTI_REGION.md).

With a lease arbiter (functions.arbiter, on a multi-Region strongly consistent table) every
claim, renewal and terminal write first wins the arbiter's lease, so of two regions that
claim one report under any replication lag only one runs it and only one writes it
terminal. Without one, cross-region safety rests on the standby's margin (last-writer-wins).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from functions.arbiter import LeaseArbiter
from functions.lean_aws import LeanDynamoDB, lean_dynamodb
from reportgrid import intents, records, resources, tracing
from reportgrid.engine.kinds import REGISTRY
from reportgrid.errors import Conflict, Internal, ReportgridError, Unavailable, bounded
from reportgrid.intents import Snapshot
from reportgrid.records import ReadItem, ReportRecord, ResultInfo
from reportgrid.states import (
    Condition,
    State,
    can_transition,
    check_transition,
    transition_condition,
)
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import DEFAULT_TTL_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import PutItemInputTypeDef

    from reportgrid.settings import Settings

log = logging.getLogger(__name__)

CONDITION_FAILED: Final = "ConditionalCheckFailedException"
# The 4xx codes DynamoDB marks "OK to retry? Yes"; every other 4xx (ValidationException
# for an item over 400 KB among them) is "No": the same request fails the same way.
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
_THROTTLING: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)
WRITE_ATTEMPTS: Final = 3
_BATCH_GET_ATTEMPTS: Final = 5
# BatchGetItem reads at most 100 items per call.
_BATCH_GET_KEYS: Final = 100


class StoreRejected(Internal):
    """DynamoDB refused a request as invalid (a 4xx that is not throttling): a defect on
    our side, never retried, since the same request would fail again."""


class LeaseLost(Conflict):
    """Another worker holds the report now (our lease expired and it took over)."""


class ReportDeleted(Conflict):
    """The report has a tombstone: it must not be written again."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_transient(err: BaseException) -> bool:
    """Throttling, 5xx and connection trouble: worth retrying later. Never a request that
    DynamoDB or botocore rejected as invalid."""
    if isinstance(err, Unavailable):
        return True
    if isinstance(err, ParamValidationError):  # a BotoCoreError, but our request's fault
        return False
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _THROTTLING or status >= 500
    return isinstance(err, BotoCoreError | ConnectionError | TimeoutError)


def _unavailable(err: BaseException, doing: str) -> ReportgridError:
    """Unavailable (retry later) for transient trouble; StoreRejected for a request that
    can never succeed, so the run fails once instead of being retried to exhaustion."""
    if is_transient(err):
        return Unavailable(f"the report store did not answer while {doing}")
    code = err.response.get("Error", {}).get("Code", "") if isinstance(err, ClientError) else ""
    log.error("the report store rejected a request while %s: %s", doing, code or err)
    return StoreRejected(f"the report store rejected a request while {doing}")


class Claim(enum.Enum):
    """What `claim` found."""

    CLAIMED = "claimed"  # we hold the lease; run it
    TERMINAL = "terminal"  # already done (or deleted): a no-op
    BUSY = "busy"  # another worker holds a live lease
    CANCELLED = "cancelled"  # cancel was requested before start; now CANCELLED
    DELETED = "deleted"  # deleted, but its item came back: the caller removes it


@dataclass(frozen=True, slots=True)
class ClaimResult:
    outcome: Claim
    record: ReportRecord | None
    # For BUSY: when the holder's lease runs out (epoch ms).
    lease_until_ms: int = 0


class ReportStore:
    def __init__(
        self,
        ddb: DynamoDBClient,
        table_name: str = resources.TABLE_NAME,
        *,
        clock: Callable[[], int] = now_ms,
        arbiter: LeaseArbiter | None = None,
        region: str = "",
        lean: LeanDynamoDB | None = None,
    ) -> None:
        self._ddb = ddb
        # A report's hot path (the conditional PutItems of claims, renewals and terminal
        # writes; the GetItems and BatchGetItems of its reads) through the lean client,
        # with boto3's request, answer, retries and exceptions; the rare calls on boto3.
        self._hot: DynamoDBClient | LeanDynamoDB = lean if lean is not None else ddb
        self._table = table_name
        self._clock = clock
        self._arbiter = arbiter
        # Stamped on every write (ReportRecord.written_region): where a change originated.
        self._region = region

    # --- reads -----------------------------------------------------------------------

    def get(self, report_id: str) -> ReportRecord | None:
        """The report item alone (strongly consistent), or None when there is none. Its
        intents are not read: decisions use `read`."""
        item = self._get_item(resources.report_key(report_id))
        return None if item is None else records.from_item(item)

    def read(self, report_id: str) -> Snapshot:
        """The report item with its cancel request and tombstone, strongly consistent, in
        one BatchGetItem (one round trip; paid per run start and lease renewal)."""
        keys: Sequence[ReadItem] = intents.report_keys(report_id)
        items: list[ReadItem] = []
        for attempt in range(_BATCH_GET_ATTEMPTS):
            try:
                response = self._hot.batch_get_item(
                    RequestItems=intents.request_items(self._table, keys, consistent=True)
                )
            except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as err:
                if attempt == _BATCH_GET_ATTEMPTS - 1 or not is_transient(err):
                    raise _unavailable(err, "reading a report") from None
                time.sleep(0.05 * 2**attempt)
                continue
            items += response.get("Responses", {}).get(self._table, [])
            unprocessed = response.get("UnprocessedKeys", {}).get(self._table)
            keys = unprocessed["Keys"] if unprocessed else []
            if not keys:
                return intents.snapshots([report_id], items)[report_id]
            time.sleep(0.05 * 2**attempt)  # unprocessed: the table is throttling
        raise Unavailable("the report store did not answer while reading a report")

    def is_deleted(self, report_id: str) -> bool:
        """Whether the report has a tombstone (strongly consistent in this region)."""
        return self._get_item(resources.tombstone_key(report_id)) is not None

    # --- batched reads (a Kinesis batch of light reports: functions.runner.run_batch) ---

    def read_many(self, report_ids: Sequence[str]) -> dict[str, Snapshot]:
        """`read` for many reports: their items and intents in BatchGetItems of at most 100
        keys (33 reports each), strongly consistent, instead of one round trip each."""
        keys = [key for rid in report_ids for key in intents.report_keys(rid)]
        return intents.snapshots(report_ids, self._batch_get(keys, "reading reports"))

    def intents_many(self, report_ids: Sequence[str]) -> dict[str, Snapshot]:
        """The cancel requests and tombstones of many reports, without their items (a
        caller that holds a report knows its item: `with_snapshots` of that record and
        these intents; a stale record only fails its conditional write, which reads
        again)."""
        keys = [key for rid in report_ids for key in intents.intent_keys(rid)]
        return intents.snapshots(report_ids, self._batch_get(keys, "reading intents"))

    def deleted_among(self, report_ids: Sequence[str]) -> set[str]:
        """The reports among `report_ids` that have a tombstone (`is_deleted` for many, 100
        per BatchGetItem)."""
        keys: list[ReadItem] = [
            {k: {"S": v} for k, v in resources.tombstone_key(rid).items()} for rid in report_ids
        ]
        found = intents.snapshots(report_ids, self._batch_get(keys, "reading tombstones"))
        return {rid for rid, snapshot in found.items() if snapshot.deleted}

    def with_snapshots(self, snapshots: Mapping[str, Snapshot]) -> ReportStore:
        """This store, except that the first `read` of each report in `snapshots` returns
        it instead of a round trip. Serving a claim or a terminal write a snapshot read a
        moment earlier in the same batch is as safe as a live read: every write is
        conditional on the revision it read, so an item changed since fails the condition
        and the write's loop reads again (live); an intent written after the batch read is
        seen as one written just after the write's own read would be (by the next renewal,
        the terminal write's read or the tombstone checks after it)."""
        return _PrefetchedStore(self, snapshots)

    def _batch_get(self, keys: Sequence[ReadItem], doing: str) -> list[ReadItem]:
        items: list[ReadItem] = []
        for start in range(0, len(keys), _BATCH_GET_KEYS):
            todo: Sequence[ReadItem] = keys[start : start + _BATCH_GET_KEYS]
            for attempt in range(_BATCH_GET_ATTEMPTS):
                try:
                    response = self._hot.batch_get_item(
                        RequestItems=intents.request_items(self._table, todo, consistent=True)
                    )
                except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as err:
                    if attempt == _BATCH_GET_ATTEMPTS - 1 or not is_transient(err):
                        raise _unavailable(err, doing) from None
                    time.sleep(0.05 * 2**attempt)
                    continue
                items += response.get("Responses", {}).get(self._table, [])
                unprocessed = response.get("UnprocessedKeys", {}).get(self._table)
                todo = unprocessed["Keys"] if unprocessed else []
                if not todo:
                    break
                time.sleep(0.05 * 2**attempt)  # unprocessed: the table is throttling
            if todo:
                raise Unavailable(f"the report store did not answer while {doing}")
        return items

    def remove(self, report_id: str) -> None:
        """Delete the item of a report that has a tombstone (a write that came back)."""
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key={k: {"S": v} for k, v in resources.report_key(report_id).items()},
            )
        except (ClientError, BotoCoreError) as err:
            raise _unavailable(err, "removing a deleted report") from None

    def _get_item(self, key: dict[str, str]) -> ReadItem | None:
        try:
            response = self._hot.get_item(
                TableName=self._table,
                Key={k: {"S": v} for k, v in key.items()},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as err:
            raise _unavailable(err, "reading a report") from None
        item: ReadItem | None = response.get("Item")
        return item

    # --- the one write primitive -----------------------------------------------------

    def _put(self, old: ReportRecord | None, new: ReportRecord) -> ReportRecord | None:
        """Write `new` if the item is still `old` (None: absent) and the transition is legal.
        Returns the stored record, or None when another writer changed the item first.
        A lost reply is recognised on re-read (same owner and the revision we wrote)."""
        check_transition(new.report_id, old.state if old else None, new.state)
        new = new.with_(revision=(old.revision if old else 0) + 1, written_region=self._region)
        condition = transition_condition(new.state, key_attribute=resources.PARTITION_KEY)
        if old is None:
            condition = Condition(
                "attribute_not_exists(#key)", {"#key": resources.PARTITION_KEY}, {}
            )
        else:
            condition = condition.and_(
                Condition(
                    "#rev = :rev", {"#rev": records.A_REVISION}, {":rev": {"N": str(old.revision)}}
                )
            )
        put: PutItemInputTypeDef = {
            "TableName": self._table,
            "Item": records.to_item(new),
            "ConditionExpression": condition.expression,
            "ExpressionAttributeNames": condition.names,
        }
        if condition.values:  # DynamoDB refuses an empty ExpressionAttributeValues
            put["ExpressionAttributeValues"] = condition.values
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self._hot.put_item(**put)
                return new
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                    current = self.get(new.report_id)
                    if current is not None and _same_write(current, new):
                        log.info("recognised our own write of %s", new.report_id)
                        return current
                    return None
                if not is_transient(err) or attempt == WRITE_ATTEMPTS - 1:
                    raise _unavailable(err, "writing a report") from None
            except (BotoCoreError, ConnectionError, TimeoutError) as err:
                # The write may have committed with the reply lost; the retry's condition
                # fails then, and the re-read above recognises it.
                if attempt == WRITE_ATTEMPTS - 1:
                    raise _unavailable(err, "writing a report") from None
            time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    # --- transitions -----------------------------------------------------------------

    def claim(
        self, task: TaskRecord, *, owner: str, region: str, lease_seconds: float
    ) -> ClaimResult:
        """Take the report for a run: PENDING/absent -> RUNNING, or take over a RUNNING
        report whose lease expired (attempts + 1). Honours a cancel requested before start
        (ends it CANCELLED, from any live state) and a deletion (writes nothing).
        Retries its read-modify-write until it reaches a decision."""
        while True:
            snapshot = self.read(task.report_id)
            current = snapshot.record
            now = self._clock()
            if snapshot.deleted:
                outcome = Claim.TERMINAL if current is None else Claim.DELETED
                return ClaimResult(outcome, current)
            if current is not None and current.terminal:
                return ClaimResult(Claim.TERMINAL, current)
            if snapshot.cancel_requested:
                base = current if current is not None else _new_record(task, now)
                # The worker records that the end was the user's cancellation (the edge
                # never writes the report item).
                cancelled = _ended(base, State.CANCELLED, now, ttl_seconds=task_ttl(task)).with_(
                    lease_owner=owner, cancel_requested=True
                )
                refused = self._arbitrate_end(
                    task.report_id, owner, lease_seconds, current, cancelled
                )
                if refused is not None:
                    return refused
                done = self._put(current, cancelled)
                if done is not None:
                    return ClaimResult(Claim.CANCELLED, done)
                continue
            if (
                current is not None
                and current.state is State.RUNNING
                and current.lease_owner != owner
                and (current.lease_until_ms or 0) > now
            ):
                return ClaimResult(Claim.BUSY, current, current.lease_until_ms or now)
            base = current if current is not None else _new_record(task, now)
            running = base.with_(
                state=State.RUNNING,
                region=region,
                started_ms=base.started_ms or now,
                attempts=base.attempts + 1,
                lease_owner=owner,
                lease_until_ms=now + int(lease_seconds * 1000),
            )
            refused = self._arbitrate_start(task.report_id, owner, lease_seconds, current)
            if refused is not None:
                return refused
            stored = self._put(current, running)
            if stored is not None:
                return ClaimResult(Claim.CLAIMED, stored)

    def renew(self, report_id: str, *, owner: str, lease_seconds: float) -> Snapshot:
        """Extend our lease. Returns the report with its intents (the caller checks the
        cancel request and the tombstone; a deleted report's lease is not extended);
        raises LeaseLost when the report is no longer ours."""
        while True:
            snapshot = self.read(report_id)
            if snapshot.deleted:
                return snapshot
            current = snapshot.record
            if (
                current is None
                or current.state is not State.RUNNING
                or current.lease_owner != owner
            ):
                raise LeaseLost(f"report {report_id} is no longer held by this worker")
            if self._arbiter is not None and not self._arbiter.renew(
                report_id, owner=owner, lease_seconds=lease_seconds
            ):
                raise LeaseLost(f"report {report_id}: another region holds its lease now")
            renewed = current.with_(lease_until_ms=self._clock() + int(lease_seconds * 1000))
            stored = self._put(current, renewed)
            if stored is not None:
                return Snapshot(report_id, stored, snapshot.cancel)

    def release(self, report_id: str, *, owner: str) -> None:
        """Give up our lease at once (expire it) so a redelivery takes over without waiting.
        Best effort: a failure only means the next holder waits for the lease."""
        try:
            snapshot = self.read(report_id)
            current = snapshot.record
            if (
                current is not None
                and not snapshot.deleted
                and current.state is State.RUNNING
                and current.lease_owner == owner
            ):
                if self._arbiter is not None:
                    self._arbiter.release(report_id, owner=owner)
                self._put(current, current.with_(lease_until_ms=0))
        except (Unavailable, StoreRejected):
            log.warning("could not release the lease on %s", report_id)

    def finish(
        self,
        report_id: str,
        *,
        owner: str,
        state: State,
        ttl_seconds: int,
        result: ResultInfo | None = None,
        error: tuple[str, str] | None = None,
    ) -> ReportRecord:
        """The terminal write of a run we hold: SUCCEEDED, FAILED or CANCELLED. Raises
        ReportDeleted (writing nothing) when the report has a tombstone."""
        while True:
            snapshot = self.read(report_id)
            if snapshot.deleted:
                raise ReportDeleted(f"report {report_id} was deleted while it ran")
            current = snapshot.record
            if current is not None and current.terminal and current.lease_owner == owner:
                return current  # our earlier write (its reply was lost)
            if (
                current is None
                or current.state is not State.RUNNING
                or current.lease_owner != owner
            ):
                raise LeaseLost(f"report {report_id} is no longer held by this worker")
            ended = _ended(current, state, self._clock(), ttl_seconds=ttl_seconds).with_(
                result=result,
                error_reason=bounded(error[0]) if error else "",
                error_message=bounded(error[1]) if error else "",
                cancel_requested=state is State.CANCELLED and snapshot.cancel_requested,
            )
            # Done in the arbiter first, with the outcome: from then on no region can start
            # another run, and a region that took the lease over makes this fail (we write
            # nothing).
            if self._arbiter is not None and not self._arbiter.complete(
                report_id, owner=owner, outcome=_outcome_item(current, ended)
            ):
                raise LeaseLost(f"report {report_id}: another region holds its lease now")
            stored = self._put(current, ended)
            if stored is not None:
                return stored

    def fail_unstarted(
        self, task: TaskRecord, *, reason: str, message: str, ttl_seconds: int, owner: str
    ) -> ReportRecord | None:
        """FAILED for a report no run holds (bad params, retries exhausted): from absent,
        PENDING, or RUNNING whose lease expired or is `owner`'s. None if it is terminal or
        another worker holds it."""
        while True:
            snapshot = self.read(task.report_id)
            current = snapshot.record
            now = self._clock()
            if snapshot.deleted:
                return None
            if current is not None and current.terminal:
                return None
            if (
                current is not None
                and current.state is State.RUNNING
                and current.lease_owner != owner
                and (current.lease_until_ms or 0) > now
            ):
                return None
            base = current if current is not None else _new_record(task, now)
            failed = _ended(base, State.FAILED, now, ttl_seconds=ttl_seconds).with_(
                error_reason=bounded(reason), error_message=bounded(message), lease_owner=owner
            )
            if self._arbitrate_end(task.report_id, owner, 0, current, failed) is not None:
                return None
            stored = self._put(current, failed)
            if stored is not None:
                return stored

    # --- the arbiter (multi-Region strongly consistent leases) ---------------------------

    def _arbitrate_start(
        self, report_id: str, owner: str, lease_seconds: float, current: ReportRecord | None
    ) -> ClaimResult | None:
        """None when we may write the claim (we hold the arbiter's lease, or there is no
        arbiter); else what the claim found: another region's live run, or a finished one
        whose terminal write has not replicated here yet."""
        if self._arbiter is None:
            return None
        grant = self._arbiter.acquire(report_id, owner=owner, lease_seconds=lease_seconds)
        if grant.held:
            return None
        if grant.done and grant.holder == owner:
            return None  # we completed it; our terminal write has not landed yet
        if grant.done:
            return ClaimResult(Claim.TERMINAL, self._roll_forward(current, grant.outcome))
        return ClaimResult(Claim.BUSY, current, grant.until_ms or self._clock())

    def _roll_forward(
        self, current: ReportRecord | None, outcome: dict[str, Any] | None
    ) -> ReportRecord | None:
        """A report the arbiter says is done whose item here is not terminal: its finisher
        died between `complete` and its write (or that write has not replicated here yet).
        Write the outcome it left, so the report does not stay RUNNING; the same content
        arriving later by replication changes nothing."""
        if outcome is None or (current is not None and current.terminal):
            return current
        ended = records.from_item(outcome)
        if not can_transition(current.state if current else None, ended.state):
            return current  # the item here is behind; replication brings the rest
        stored = self._put(current, ended)
        return stored if stored is not None else self.get(ended.report_id)

    def _arbitrate_end(
        self,
        report_id: str,
        owner: str,
        lease_seconds: float,
        current: ReportRecord | None,
        ended: ReportRecord,
    ) -> ClaimResult | None:
        """Before a terminal write without a run (cancelled before start, failed unstarted):
        take the lease and mark the report done with `ended` at once, so that no other
        region runs it."""
        refused = self._arbitrate_start(report_id, owner, max(lease_seconds, 1.0), current)
        if refused is not None:
            return refused
        if self._arbiter is not None and not self._arbiter.complete(
            report_id, owner=owner, outcome=_outcome_item(current, ended)
        ):
            return ClaimResult(Claim.BUSY, current, self._clock())
        return None

    def mark_forwarded(self, task: TaskRecord, *, token: str) -> bool:
        """Mark a heavy report PENDING+forwarded before it goes to the queue. True if this
        caller should send it (newly marked, or marked earlier by the same `token`, i.e. a
        redelivery of the same stream record whose send may have failed); False if it was
        forwarded by another record, has started, or is done."""
        while True:
            snapshot = self.read(task.report_id)
            current = snapshot.record
            if snapshot.deleted:
                return False
            if current is not None and (current.state is not State.PENDING or current.forwarded):
                return current.state is State.PENDING and current.lease_owner == token
            base = current if current is not None else _new_record(task, self._clock())
            stored = self._put(current, base.with_(forwarded=True, lease_owner=token))
            if stored is not None:
                return True


def store_for(settings: Settings, ddb: DynamoDBClient) -> ReportStore:
    """The workers' store for these settings: with the lease arbiter when the deployment
    has its table (REPORTGRID_ARBITER_TABLE_NAME), on the same client (an MRSC replica is
    in this region, like the reports table's), and its hot calls on the lean DynamoDB
    client of that client's endpoint and credentials."""
    arbiter = None
    if settings.arbiter_table_name:
        arbiter = LeaseArbiter(ddb, settings.arbiter_table_name)
    return ReportStore(
        ddb,
        settings.table_name,
        arbiter=arbiter,
        region=settings.region,
        lean=lean_dynamodb(ddb),
    )


class _PrefetchedStore(ReportStore):
    """ReportStore.with_snapshots: the same client, table, clock (and arbiter), and each
    given snapshot served once."""

    def __init__(self, store: ReportStore, snapshots: Mapping[str, Snapshot]) -> None:
        self.__dict__.update(store.__dict__)
        self._snapshots = dict(snapshots)
        self._snapshots_lock = threading.Lock()  # claims run on several threads

    def read(self, report_id: str) -> Snapshot:
        with self._snapshots_lock:
            snapshot = self._snapshots.pop(report_id, None)
        return snapshot if snapshot is not None else super().read(report_id)


def _outcome_item(current: ReportRecord | None, ended: ReportRecord) -> dict[str, Any]:
    """The item `_put(current, ended)` writes (its revision included), for the arbiter."""
    revision = (current.revision if current else 0) + 1
    return dict(records.to_item(ended.with_(revision=revision)))


def task_ttl(task: TaskRecord) -> int:
    """The result retention the request asked for (validated by the edge)."""
    request = task.request
    return request.ttl.seconds if request.HasField("ttl") else DEFAULT_TTL_SECONDS


def _same_write(current: ReportRecord, written: ReportRecord) -> bool:
    return (
        current.revision == written.revision
        and current.state is written.state
        and current.lease_owner == written.lease_owner
    )


def _new_record(task: TaskRecord, now: int) -> ReportRecord:
    request = task.request
    created = task.accept_time.ToMilliseconds() if task.HasField("accept_time") else now
    return ReportRecord(
        report_id=task.report_id,
        tenant=task.tenant,
        kind=request.kind,
        state=State.PENDING,
        created_ms=created,
        output_format=request.output_format or pb.OUTPUT_FORMAT_CSV,
        home_region=task.home_region,
        idempotency_key=request.idempotency_key,
        notify_url=request.notify.url,
        labels=dict(request.labels),
        spec=records.request_spec(
            request, kind_version=_kind_version(request.kind), ttl_seconds=task_ttl(task)
        ),
        # Kept on every later write (ReportRecord.extra): the completion event names it.
        extra=tracing.item_attributes(task),
    )


def _kind_version(kind: str) -> int:
    """The version of the kind this worker runs (0 for a kind it does not offer: such a
    report ends FAILED INVALID_PARAMS)."""
    return REGISTRY.get(kind).version if kind in REGISTRY else 0


def _ended(
    record: ReportRecord, state: State, now: int, *, ttl_seconds: int | None = None
) -> ReportRecord:
    ttl = DEFAULT_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    return record.with_(
        state=state, ended_ms=now, expires_at=now // 1000 + ttl, lease_until_ms=None
    )
