"""One scheduler run: find every schedule due by the run's minute and fire each once
(docs/SCHEDULES.md, "What one run does").

    1. DUE_SHARDS range queries of the tenant index (`due!<shard>`, sort key <= the run's
       minute), side by side, paged; a peer region's item only PEER_GRACE after its fire.
    2. Per due item (FIRE_THREADS at a time, none started once the Lambda's time runs
       short): a consistent read of the schedule; a due item whose version or next fire
       the schedule no longer has is the index lagging behind a change, and is left alone.
    3. The plan (reportgrid/schedules/firing.py): the fire to submit, the ones dropped, the
       next fire within the end.
    4. Overlap `skip` with a last report that is not terminal: recorded as skipped.
    5. The submit, as SubmitReport does it: the template validated again (the kinds may
       have changed; a disabled tenant's fires are skipped), the tenant's quotas applied,
       the fire's key claimed with the edge's claim item and fingerprint
       (reportgrid/claims.py), the task written to the task stream with PutRecords
       (partition key: the report id). A claim already there with the same fingerprint is
       the earlier fire's report: its task is written again (that fire may have crashed
       before its PutRecords), which the workers' conditional writes make one report. A
       claim with another fingerprint (the template changed inside the minute) means the
       minute was fired already: nothing is submitted.
    6. One TransactWriteItems: the schedule at version + 1 (conditioned on the version
       read) and its due item re-filed under the next fire, or deleted when there is none.
       A crash before it leaves the item due: the next run submits again, and the claim
       makes it the same report.

A DURABILITY_MULTI_REGION template is not fired (CreateSchedule and UpdateSchedule are to
refuse it): its fires fail here rather than run with weaker durability than it asks.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import claims, records, resources, tasks, tracing
from reportgrid.engine.registry import Registry
from reportgrid.errors import InvalidArgument, NotFound, ReportgridError
from reportgrid.ids import IdCodec
from reportgrid.quotas import apply_quotas
from reportgrid.schedules import due as due_rules
from reportgrid.schedules import firing, items
from reportgrid.schedules.items import Due, Overlap, Schedule
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.tenants import Quotas, quotas_from_item
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy, validate_submit

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_kinesis.client import KinesisClient

logger = Logger(service=resources.SERVICE_SCHEDULER, child=True)

# Fires in flight at once: each is a few small DynamoDB calls and one PutRecords, so the
# run is I/O bound (the clients' pools hold 32 connections: functions/clients.py).
FIRE_THREADS: Final = 32
# No fire starts with less than this left of the invocation: one fire takes well under a
# second, a slow one its calls' timeouts (functions/clients.py: 3 s connect, 10 s read).
# What is not started stays due and the next minute's run fires it.
TIME_MARGIN_MS: Final = 15_000
PUT_ATTEMPTS: Final = 3
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_TASK_RETENTION_MS: Final = resources.TASK_RETENTION_HOURS * 3600 * 1000


class Outcome(enum.StrEnum):
    FIRED = "fired"  # a new report submitted
    DEDUPLICATED = "deduplicated"  # the fire's key named an earlier report: sent again
    ALREADY_FIRED = "already_fired"  # the key was used with another template: nothing sent
    SKIPPED = "skipped"  # overlap policy skip, the last report still running
    TENANT_DISABLED = "tenant_disabled"  # the tenant is disabled: skipped
    DROPPED = "dropped"  # every missed fire was outside the catch-up window
    ENDED = "ended"  # past its end with nothing to fire: its due item deleted
    INVALID = "invalid"  # the template no longer passes validation: not submitted
    STALE = "stale"  # the index is behind the schedule (changed, paused, gone): left alone
    NOT_HERE = "not_here"  # the peer's schedule, inside its grace period
    CONFLICT = "conflict"  # the schedule changed during the fire: the next run re-plans
    DEFERRED = "deferred"  # not started, the invocation's time running short
    FAILED = "failed"  # a call failed: stays due, the next run fires it (same key)


_SUBMITTED: Final = frozenset({Outcome.FIRED, Outcome.DEDUPLICATED, Outcome.ALREADY_FIRED})
# Not fires: the index lagging, or the peer's schedule within its grace period.
_QUIET: Final = frozenset({Outcome.STALE, Outcome.NOT_HERE})


@dataclass(frozen=True, slots=True)
class Fired:
    outcome: Outcome
    dropped: int = 0
    lag_seconds: float | None = None  # from the fire's minute to its submit
    fire: datetime | None = None
    logged: bool = False  # its line written already (with the task's fields)


@dataclass
class RunSummary:
    now: datetime
    due: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    max_lag_seconds: float | None = None

    def add(self, fired: Fired) -> None:
        self.outcomes[fired.outcome.value] += 1
        self.dropped += fired.dropped
        if fired.lag_seconds is not None:
            self.max_lag_seconds = max(self.max_lag_seconds or 0.0, fired.lag_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheduled_time": self.now.isoformat().replace("+00:00", "Z"),
            "due": self.due,
            "outcomes": dict(self.outcomes),
            "dropped": self.dropped,
            "max_lag_seconds": self.max_lag_seconds,
        }


class FireFailed(Exception):
    """A call of one fire failed; the schedule stays due."""


@dataclass(frozen=True, slots=True)
class _Tenant:
    disabled: bool
    quotas: Quotas | None  # None: no tenant item, only the service's own limits


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Firer:
    """Fires the due schedules of one region. Thread-safe: boto3 clients are, and each
    fire keeps its state to itself."""

    def __init__(
        self,
        *,
        dynamodb: DynamoDBClient,
        kinesis: KinesisClient,
        table_name: str,
        stream_name: str,
        region: str,
        codec: IdCodec,
        registry: Registry,
        inputs: InputPolicy,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._ddb = dynamodb
        self._kinesis = kinesis
        self._table = table_name
        self._stream = stream_name
        self.region = region
        self._codec = codec
        self._registry = registry
        self._inputs = inputs
        self._clock_ms = clock_ms  # the wall clock: ids, claims' expiry, accept time, lag
        # Tenant items read in this run: a popular minute has many fires per tenant.
        self._tenants: dict[str, _Tenant] = {}

    # -- the run --------------------------------------------------------------------------

    def run(self, now: datetime, *, remaining_ms: Callable[[], int] | None = None) -> RunSummary:
        summary = RunSummary(now=now)
        self._tenants = {}  # one run at a time per Firer (the handler's container)
        found, unreadable = self.due_items(now)
        summary.due = len(found)
        # A shard that could not be read: its schedules are fired by the next run.
        if unreadable:
            summary.outcomes[Outcome.FAILED.value] += unreadable
        lock = threading.Lock()

        def one(entry: Due) -> None:
            if remaining_ms is not None and remaining_ms() < TIME_MARGIN_MS:
                fired = Fired(Outcome.DEFERRED)
            else:
                fired = self.fire_safely(entry, now)
            with lock:
                summary.add(fired)

        with ThreadPoolExecutor(FIRE_THREADS, thread_name_prefix="fire") as pool:
            list(pool.map(one, found))
        return summary

    def due_items(self, now: datetime) -> tuple[list[Due], int]:
        """Every due item filed at or before `now`'s minute, over all shards at once, and
        how many shards (or items) could not be read."""
        upper = items.due_upper_bound(firing.ms_of(now))

        def shard_items(shard: int) -> tuple[list[Due], int]:
            found: list[Due] = []
            try:
                for item in self._query(shard, upper):
                    try:
                        found.append(items.due_from_item(item))
                    except (KeyError, TypeError, ValueError):
                        logger.error("a due item is malformed", extra={"item": str(item)[:500]})
                        return found, 1
            except (ClientError, BotoCoreError, OSError) as err:
                logger.warning(
                    "a due shard could not be read",
                    extra={"shard": shard, "error": f"{type(err).__name__}: {err}"},
                )
                return found, 1
            return found, 0

        with ThreadPoolExecutor(resources.DUE_SHARDS, thread_name_prefix="due") as pool:
            pages = list(pool.map(shard_items, range(resources.DUE_SHARDS)))
        return [entry for page, _ in pages for entry in page], sum(bad for _, bad in pages)

    def _query(self, shard: int, upper: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": resources.TENANT_INDEX_NAME,
            "KeyConditionExpression": "#p = :p AND #s <= :upper",
            "ExpressionAttributeNames": {
                "#p": resources.TENANT_INDEX_PARTITION_KEY,
                "#s": resources.TENANT_INDEX_SORT_KEY,
            },
            "ExpressionAttributeValues": {
                ":p": {"S": items.due_partition(shard)},
                ":upper": {"S": upper},
            },
        }
        while True:
            page = self._ddb.query(**kwargs)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def fire_safely(self, entry: Due, now: datetime) -> Fired:
        """`fire`, with any failure logged and counted instead of raised."""
        try:
            return self.fire(entry, now)
        except (FireFailed, ClientError, BotoCoreError, OSError, ReportgridError) as err:
            logger.warning(
                "schedule fire failed",
                extra=_fields(entry, outcome=Outcome.FAILED, error=f"{type(err).__name__}: {err}"),
            )
        except Exception:  # one schedule's defect (a bug, a bad item) must not stop the others
            logger.exception("schedule fire failed", extra=_fields(entry, outcome=Outcome.FAILED))
        return Fired(Outcome.FAILED)

    # -- one fire -------------------------------------------------------------------------

    def fire(self, entry: Due, now: datetime) -> Fired:
        """Fire one due item; one log line about it (its report's fields when it has one)."""
        fired = self._fire(entry, now)
        if fired.outcome in _QUIET:
            logger.debug(fired.outcome.value, extra=_fields(entry, outcome=fired.outcome))
        elif not fired.logged:
            logger.info(
                fired.outcome.value,
                extra=_fields(
                    entry,
                    outcome=fired.outcome,
                    fire_time=_iso(fired.fire) if fired.fire else "",
                    dropped=fired.dropped,
                ),
            )
        return fired

    def _fire(self, entry: Due, now: datetime) -> Fired:
        if not due_rules.fires_here(
            home_region=entry.home_region,
            region=self.region,
            due=firing.at_ms(entry.next_fire_ms),
            now=now,
        ):
            return Fired(Outcome.NOT_HERE)
        schedule = self._schedule(entry)
        if (
            schedule is None
            or not schedule.active
            or schedule.version != entry.version
            or schedule.next_fire_ms != entry.next_fire_ms
        ):
            # The edge moves the schedule and its due item in one transaction, so the due
            # item the index shows is not the current one: the current one (if any) is
            # found under its own sort key once the index catches up.
            return Fired(Outcome.STALE)
        # The peer plans as of PEER_GRACE ago: it takes over only fires the home region
        # should have made by now, never the minute the home region may be firing now
        # (a cross-region race of two claims, two reports).
        peer = schedule.home_region != self.region
        plan = firing.plan_fire(schedule, now - due_rules.PEER_GRACE if peer else now)
        if plan.fire is None:
            if not plan.dropped and not plan.ends:
                return Fired(Outcome.STALE)  # not due after all (a fire later in the minute)
            outcome = Outcome.DROPPED if plan.dropped else Outcome.ENDED
            return self._commit(schedule, plan, outcome, report_id="")
        fire = plan.fire
        if schedule.overlap is Overlap.SKIP and self._running(schedule):
            return self._commit(schedule, plan, Outcome.SKIPPED, report_id="", skips=1, fire=fire)
        tenant = self._tenant(schedule.tenant)
        if tenant.disabled:
            return self._commit(
                schedule, plan, Outcome.TENANT_DISABLED, report_id="", skips=1, fire=fire
            )
        try:
            request = self._request(schedule, fire, tenant)
        except InvalidArgument as err:
            # Not worth repeating every minute: the fire is recorded as skipped and counted
            # as failed (the alarm), with the reason in the log.
            logger.error(
                "scheduled template refused",
                extra=_fields(
                    entry,
                    outcome=Outcome.INVALID,
                    fire_time=_iso(fire),
                    violations=[f"{v.field}: {v.description}" for v in err.violations],
                ),
            )
            fired = self._commit(schedule, plan, Outcome.INVALID, report_id="", skips=1, fire=fire)
            return dataclasses.replace(fired, logged=True)
        fingerprint = claims.fingerprint(request.fingerprinted)
        report_id, outcome = self._claim(schedule, request.message, fingerprint)
        task = TaskRecord(
            report_id=report_id,
            tenant=schedule.tenant,
            home_region=self.region,
            request=request.message,
            trace_header=tracing.mint(self._clock_ms() / 1000).header(),
        )
        task.accept_time.FromMilliseconds(self._clock_ms())
        if outcome is not Outcome.ALREADY_FIRED:
            self._put(task)
        # The wall clock (so a run that started late shows it), or the run's minute under
        # a test clock that stands ahead of it (the local region).
        lag = firing.lag_seconds(fire, max(now, firing.at_ms(self._clock_ms())))
        fired = self._commit(
            schedule,
            plan,
            outcome,
            report_id=report_id,
            fire=fire,
            lag=lag,
        )
        logger.info(
            outcome.value,
            extra=tracing.report_fields(
                task,
                f"schedule_{outcome.value}",
                schedule_id=schedule.schedule_id,
                fire_time=_iso(fire),
                dropped=plan.dropped,
                lag_seconds=round(lag, 3),
                committed=fired.outcome is outcome,
            ),
        )
        return dataclasses.replace(fired, logged=True)

    def _schedule(self, entry: Due) -> Schedule | None:
        answer = self._ddb.get_item(
            TableName=self._table,
            Key=items.schedule_key(entry.tenant, entry.schedule_id),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return None if item is None else items.from_item(item)

    def _running(self, schedule: Schedule) -> bool:
        """Whether the schedule's last report is not terminal yet. A report with no item is
        queued (no worker has written it) while its task can still be in the task log,
        unless it was deleted (its tombstone), as the edge reads it (grpc_edge/reads.py)."""
        rid = schedule.last_report_id
        if not rid:
            return False
        answer = self._ddb.get_item(
            TableName=self._table,
            Key={k: {"S": v} for k, v in resources.report_key(rid).items()},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if item is not None:
            record = records.from_item(item)
            return not record.effective_state(self._clock_ms()).terminal
        gone = self._ddb.get_item(
            TableName=self._table,
            Key={k: {"S": v} for k, v in resources.tombstone_key(rid).items()},
            ConsistentRead=True,
        )
        if gone.get("Item") is not None:
            return False
        try:
            created_ms = self._codec.verify(schedule.tenant, rid).created_ms
        except (InvalidArgument, NotFound):
            return False  # not an id of ours (a rotated-out secret): nothing to wait for
        return self._clock_ms() - created_ms < _TASK_RETENTION_MS

    def _tenant(self, tenant: str) -> _Tenant:
        known = self._tenants.get(tenant)
        if known is None:
            known = self._tenants[tenant] = self._read_tenant(tenant)
        return known

    def _read_tenant(self, tenant: str) -> _Tenant:
        answer = self._ddb.get_item(
            TableName=self._table,
            Key={k: {"S": v} for k, v in resources.tenant_key(tenant).items()},
        )
        item = answer.get("Item")
        if item is None:
            return _Tenant(disabled=False, quotas=None)
        return _Tenant(
            disabled=bool(item.get("disabled", {}).get("BOOL", False)),
            quotas=quotas_from_item(item),
        )

    def _request(self, schedule: Schedule, fire: datetime, tenant: _Tenant) -> _Request:
        """The fire's request validated as SubmitReport validates it, and its copy as
        fingerprinted (before the quotas fill defaults in, as the edge takes it)."""
        message = firing.fire_request(schedule, fire)
        try:
            validate_submit(message, self._registry, tenant=schedule.tenant, inputs=self._inputs)
        except InvalidArgument as err:
            raise InvalidArgument(
                [
                    dataclasses.replace(v, field=f"schedule.template.{v.field}")
                    for v in err.violations
                ]
            ) from None
        if message.durability == pb.DURABILITY_MULTI_REGION:
            raise InvalidArgument.field(
                "schedule.template.durability",
                "DURABILITY_MULTI_REGION is not available to scheduled reports",
            )
        fingerprinted = pb.SubmitReportRequest()
        fingerprinted.CopyFrom(message)
        if tenant.quotas is not None:
            apply_quotas(message, tenant.quotas)
        return _Request(message=message, fingerprinted=fingerprinted)

    def _claim(
        self, schedule: Schedule, request: pb.SubmitReportRequest, fingerprint: claims.Fingerprint
    ) -> tuple[str, Outcome]:
        """The fire's report id: a new one claimed for its key, or the one an earlier fire
        of the same minute claimed."""
        report_id = self._codec.new(schedule.tenant, self.region)
        ours = claims.new_claim(
            report_id.value, fingerprint.value, created_ms=report_id.created_ms, region=self.region
        )
        pk = claims.claim_key(schedule.tenant, request.idempotency_key)
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=claims.claim_item(pk, ours),
                ConditionExpression=claims.CONDITION,
                ExpressionAttributeNames=claims.NAMES,
                ExpressionAttributeValues={":now": {"N": str(self._clock_ms() // 1000)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                raise
            # ALL_OLD: the claim that is there comes with the refusal (PutItem API reference).
            answer = cast(dict[str, Any], err.response)
            existing = claims.claim_of(answer.get("Item") or self._read_claim(pk))
            if existing.report_id == ours.report_id:
                return ours.report_id, Outcome.FIRED  # our own write, repeated by a retry
            if fingerprint.matches(existing.fingerprint):
                return existing.report_id, Outcome.DEDUPLICATED
            return existing.report_id, Outcome.ALREADY_FIRED
        return ours.report_id, Outcome.FIRED

    def _read_claim(self, pk: dict[str, str]) -> dict[str, Any]:
        answer = self._ddb.get_item(
            TableName=self._table, Key={k: {"S": v} for k, v in pk.items()}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            raise FireFailed("the fire's idempotency claim changed while it was read")
        return dict(item)

    def _put(self, task: TaskRecord) -> None:
        """The task into the task stream, as the edge's producer writes it (PutRecords,
        the report id as partition key); a rejected record is retried a few times."""
        data = tasks.encode(task)
        for attempt in range(PUT_ATTEMPTS):
            answer = self._kinesis.put_records(
                StreamName=self._stream,
                Records=[{"Data": data, "PartitionKey": task.report_id}],
            )
            results = answer.get("Records") or [{"ErrorCode": "Missing"}]
            if not answer.get("FailedRecordCount") and not results[0].get("ErrorCode"):
                return
            time.sleep(0.05 * 2**attempt)
        raise FireFailed(f"the task stream did not accept report {task.report_id}")

    def _commit(
        self,
        schedule: Schedule,
        plan: firing.FirePlan,
        outcome: Outcome,
        *,
        report_id: str,
        skips: int = 0,
        fire: datetime | None = None,
        lag: float | None = None,
    ) -> Fired:
        """The schedule after this fire, at version + 1 if still at the version read, and
        its due item re-filed under the next fire (deleted when there is none)."""
        submitted = outcome in _SUBMITTED
        after = dataclasses.replace(
            schedule,
            version=schedule.version + 1,
            next_fire_ms=plan.next_fire_ms,
            last_fire_ms=firing.ms_of(fire) if submitted and fire else schedule.last_fire_ms,
            last_report_id=report_id or schedule.last_report_id,
            fired=schedule.fired + (1 if submitted else 0),
            skipped=schedule.skipped + skips + plan.dropped,
        )
        actions: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": dict(items.to_item(after)),
                    "ConditionExpression": "#v = :v",
                    "ExpressionAttributeNames": {"#v": items.A_VERSION},
                    "ExpressionAttributeValues": {":v": {"N": str(schedule.version)}},
                }
            }
        ]
        if after.active:
            actions.append({"Put": {"TableName": self._table, "Item": items.due_item(after)}})
        else:
            key = items.due_key(after.tenant, after.schedule_id)
            actions.append({"Delete": {"TableName": self._table, "Key": dict(key)}})
        try:
            self._ddb.transact_write_items(TransactItems=actions)
        except ClientError as err:
            answer = cast(dict[str, Any], err.response)
            reasons = [str(r.get("Code")) for r in answer.get("CancellationReasons") or []]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                # Changed by a user's write in between: that write re-filed its due item,
                # and a fire of the same minute again is this report (its claim).
                return Fired(Outcome.CONFLICT, plan.dropped, lag, fire)
            raise
        return Fired(outcome, plan.dropped, lag, fire)


@dataclass(frozen=True, slots=True)
class _Request:
    message: pb.SubmitReportRequest  # as submitted: the tenant's quotas applied
    fingerprinted: pb.SubmitReportRequest  # as the fingerprint takes it


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fields(entry: Due, **extra: object) -> dict[str, object]:
    """A log line about a fire that has no task (yet): the report fields it has."""
    return {
        "event": "schedule_fire",
        "report_id": "",
        "tenant": entry.tenant,
        "home_region": entry.home_region,
        "trace_id": "",
        "schedule_id": entry.schedule_id,
        **{k: (v.value if isinstance(v, enum.Enum) else v) for k, v in extra.items()},
    }
