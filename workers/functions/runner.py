"""One report run, shared by both runtimes: validate, claim under a lease, fetch the
input, generate (in-process or in a process pool), store the result, write the terminal
state, publish it.

Errors sort into three kinds:
- the user's (bad params, unreadable input, a missing column): the report ends FAILED,
  never retried;
- transient (throttling, timeouts, 5xx, a broken worker process): the lease is released
  and the error propagates, so the runtime redelivers the task;
- lost lease (another worker took over): we stop and write nothing.

Each run is held to its path's limits (reportgrid/limits.py): a deadline (light: within
the stream-worker Lambda's timeout; heavy: its own), DuckDB memory and threads from the
worker's size and concurrency, bounded spill space, and a cap on an S3 input's size read
from the object before its bytes are. A report over a limit ends FAILED with its reason
(TIME_LIMIT_EXCEEDED, RESOURCE_LIMIT, INPUT_TOO_LARGE) and is not retried.

The user's intents are read with the report (functions.store.ReportStore.read): a cancel
request before the start and at every lease renewal; a tombstone before the start, at every
renewal, before the terminal write, right after it and once more a replication margin later
(`LateDeleteCheck`: a tombstone written in another region just before our terminal write
arrives within it). A run that finds its report deleted writes nothing more and removes
what it wrote: its S3 object and, if its write landed, the report item
(docs/MULTI_REGION.md).
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import heapq
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from functions.input_access import TenantInputs, boto3_tenant_inputs
from functions.notify import Notifier
from functions.store import (
    Claim,
    ClaimResult,
    LeaseLost,
    ReportDeleted,
    ReportStore,
    StoreRejected,
    is_transient,
    task_ttl,
)
from functions.tenant_slots import Grant, TenantSlots, Wanted
from reportgrid import limits, validation
from reportgrid.engine.exceptions import Cancelled
from reportgrid.engine.kinds import REGISTRY
from reportgrid.engine.registry import CostClass, Generator, Registry
from reportgrid.engine.request import (
    CancelFlag,
    GenerateRequest,
    GenerateResult,
    InputData,
    RunLimits,
)
from reportgrid.errors import InvalidArgument, ReportFailure, Unavailable
from reportgrid.intents import Snapshot
from reportgrid.records import ReportRecord, ResultInfo
from reportgrid.results import store_result, versions_of
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

log = logging.getLogger(__name__)

GENERATOR_FAILED_MESSAGE: Final = (
    "the report could not be generated because of an internal error; "
    "submit it again or contact support with the report id"
)
_S3_MISSING: Final = frozenset({"404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied"})
# The longest pause between cancellation checks of a running report.
MAX_HEARTBEAT_SECONDS: Final = 5.0
INPUT_TOO_LARGE: Final = "INPUT_TOO_LARGE"
# The task names an S3 input outside its tenant's prefix of the input buckets.
INPUT_FORBIDDEN: Final = "INPUT_FORBIDDEN"
# A run that failed for a reason that is neither the user's nor transient (a defect).
WORKER_ERROR: Final = "WORKER_ERROR"
WORKER_ERROR_MESSAGE: Final = "the report could not be run; submit it again"
_DOWNLOAD_CHUNK_BYTES: Final = 1024 * 1024
_MIB: Final = 1024 * 1024
# DynamoDB writes of a batch in flight at once (claims, terminal writes, renewals): each is
# a round trip of a few ms that mostly waits, so a small pool hides their latency.
IO_THREADS: Final = 16

GeneratorExecutor = Callable[[Generator, GenerateRequest], GenerateResult]
_T = TypeVar("_T")


def run_in_process(generator: Generator, request: GenerateRequest) -> GenerateResult:
    result: GenerateResult = generator(request)
    return result


class Outcome(enum.Enum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NOOP = "NOOP"  # already terminal, deleted, or another worker took it over
    BUSY = "BUSY"  # another worker holds a live lease: try again after retry_after
    # Its tenant has max_running reports running (functions/tenant_slots.py): nothing was
    # written; the caller puts the task off (functions/deferral.py), never fails it.
    DEFERRED = "DEFERRED"


@dataclass(frozen=True, slots=True)
class RunResult:
    outcome: Outcome
    record: ReportRecord | None = None
    retry_after_seconds: float = 0.0
    duration_ms: int = 0


@dataclass
class Services:
    """What a run talks to; built once per process (clients injectable for tests)."""

    settings: Settings
    store: ReportStore
    s3: S3Client
    notifier: Notifier
    registry: Registry = field(default=REGISTRY)
    # Reads S3 inputs as the task's tenant (functions/input_access.py); by default from
    # the settings' input reader role.
    tenant_inputs: TenantInputs | None = None
    # Per-tenant running caps; None runs every task uncapped (the standby worker: mirrored
    # tasks of a region that may be lost).
    slots: TenantSlots | None = None
    inputs: validation.InputPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = validation.InputPolicy.of(
            self.settings.input_buckets, loopback_webhooks=self.settings.webhook_allow_loopback
        )
        if self.tenant_inputs is None:
            self.tenant_inputs = boto3_tenant_inputs(self.settings, self.s3)


@dataclass(frozen=True, slots=True)
class RunCaps:
    """The longest a report may run on each path, and the largest S3 input (reportgrid/
    limits.py; tests lower them)."""

    light_seconds: float = limits.LIGHT_RUN_SECONDS
    heavy_seconds: float = limits.HEAVY_RUN_SECONDS
    max_input_bytes: int = limits.MAX_S3_INPUT_BYTES

    def for_cost(self, cost: CostClass) -> float:
        return self.heavy_seconds if cost is CostClass.HEAVY else self.light_seconds


def run_limits(
    cost: CostClass,
    settings: Settings,
    *,
    concurrency: int,
    caps: RunCaps,
    now: float,
) -> RunLimits:
    """One report's share of this worker: its deadline, and DuckDB's memory and threads
    from the task's size split between the `concurrency` reports it runs at once (DuckDB's
    own default is 80 % of the machine's RAM per database, whatever else runs)."""
    memory_bytes = (
        settings.worker_memory_mib * _MIB
        if settings.worker_memory_mib is not None
        else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    )
    vcpus = settings.worker_vcpus or len(os.sched_getaffinity(0)) or 1
    seconds = caps.for_cost(cost)
    heavy = cost is CostClass.HEAVY
    if settings.worker_disk_mib is not None:
        temp_bytes = int(
            settings.worker_disk_mib * _MIB * limits.ENGINE_DISK_FRACTION / concurrency
        )
    else:
        temp_bytes = (
            limits.HEAVY_TEMP_DIRECTORY_BYTES if heavy else limits.LIGHT_TEMP_DIRECTORY_BYTES
        )
    return RunLimits(
        deadline=now + seconds,
        time_limit_seconds=seconds,
        memory_limit_bytes=max(
            limits.MIN_ENGINE_MEMORY_BYTES,
            int(memory_bytes * limits.ENGINE_MEMORY_FRACTION / concurrency),
        ),
        threads=max(1, vcpus // concurrency),
        temp_directory_bytes=temp_bytes,
        max_input_bytes=caps.max_input_bytes,
    )


def _check_input_size(uri: str, content_length: int, cap: int) -> None:
    """An S3 input larger than the cap fails before (or while) its bytes are read."""
    if content_length > cap:
        raise ReportFailure(
            INPUT_TOO_LARGE,
            f"{uri} is {content_length} bytes or more; an input may be at most {cap} bytes",
        )


def download_capped(s3: S3Client, bucket: str, key: str, path: str, run: RunLimits) -> None:
    """GetObject into `path`, refusing an object over the cap from its ContentLength before
    any byte is written, and counting while it streams (ContentLength is the size of this
    very response, so a replaced object cannot slip past a separate HeadObject). The
    deadline is checked between chunks."""
    uri = f"s3://{bucket}/{key}"
    response = s3.get_object(Bucket=bucket, Key=key)
    body = response["Body"]
    try:
        _check_input_size(uri, int(response.get("ContentLength", 0)), run.max_input_bytes)
        written = 0
        with open(path, "wb") as f:
            while chunk := body.read(_DOWNLOAD_CHUNK_BYTES):
                written += len(chunk)
                _check_input_size(uri, written, run.max_input_bytes)
                f.write(chunk)
                run.check()
    finally:
        body.close()


def _input_forbidden(task: TaskRecord, inputs: validation.InputPolicy) -> str | None:
    """Why the task's S3 input is outside its tenant's inputs, or None (checked before the
    claim, so a forged task is failed without a run and without a read)."""
    request = task.request
    if not request.HasField("input") or request.input.WhichOneof("source") != "s3_uri":
        return None
    try:
        validation.tenant_input_location(request.input.s3_uri, tenant=task.tenant, inputs=inputs)
    except validation.InputForbidden as err:
        return f"input.s3_uri {err}"
    return None


def is_transient_error(err: BaseException) -> bool:
    return is_transient(err) or isinstance(err, BrokenProcessPool)


_scratch: list[str] = []
_scratch_lock = threading.Lock()


def scratch_root() -> str:
    """This process's directory of report work dirs, made on first use and removed at
    exit: the shared DuckDB database (reportgrid/engine/session.py) may use it and
    nothing else, so one per process keeps one database per process."""
    with _scratch_lock:
        if not _scratch:
            _scratch.append(tempfile.mkdtemp(prefix="reportgrid-runs-"))
            atexit.register(shutil.rmtree, _scratch[0], ignore_errors=True)
        return _scratch[0]


def _cancel_flag(work_dir: str) -> CancelFlag:
    return CancelFlag(os.path.join(work_dir, "cancel"))


def delete_result_object(s3: S3Client, bucket: str, key: str) -> None:
    """Delete every version of a result object (the buckets are versioned, and a plain
    delete would only hide the data behind a delete marker)."""
    versions = versions_of(s3.list_object_versions(Bucket=bucket, Prefix=key), key)
    if versions:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True})


@dataclass(eq=False)
class Lease:
    """One report a run holds, as the heartbeat sees it: renewed while it is open, flagged
    (and its cancel flag set) when it was lost or deleted."""

    report_id: str
    owner: str
    cancel: CancelFlag
    # The report item as our last write (claim or renewal) left it.
    record: ReportRecord | None = None
    hooks: Sequence[Callable[[], None]] = ()
    lost: bool = False
    deleted: bool = False


class Heartbeat:
    """Renews the leases of the reports a run holds, every min(lease / 3,
    MAX_HEARTBEAT_SECONDS), on one thread for all of them (a Kinesis batch's reports wait
    their turn under their lease, and a report that runs long keeps it): sets a report's
    cancel flag when a cancellation is requested, it is deleted or its lease is lost, and
    runs the runtime's extra hooks (SQS visibility). `close(lease)` stops renewing one."""

    def __init__(
        self,
        store: ReportStore,
        leases: Iterable[Lease],
        *,
        lease_seconds: float,
        pool: Executor | None = None,
        each_beat: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._lease = lease_seconds
        self._pool = pool
        self._each_beat = each_beat  # once per beat for all (the runs' tenant slots)
        self._open = {id(lease): lease for lease in leases}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def close(self, lease: Lease) -> None:
        with self._lock:
            self._open.pop(id(lease), None)

    def _loop(self) -> None:
        interval = min(self._lease / 3, MAX_HEARTBEAT_SECONDS)
        while not self._stop.wait(interval):
            with self._lock:
                due = list(self._open.values())
            if self._each_beat is not None:
                try:
                    self._each_beat()
                except Exception:
                    log.warning("heartbeat's extra renewal failed", exc_info=True)
            if self._pool is not None and len(due) > 1:
                # A batch's renewals: their reads in one BatchGetItem per 33 reports
                # (ReportStore.with_snapshots), their writes in flight together.
                store = self._store
                try:
                    store = store.with_snapshots(store.read_many([d.report_id for d in due]))
                except (Unavailable, StoreRejected):
                    log.warning("batched read failed; each renewal reads its own")
                list(self._pool.map(self._renew, due, [store] * len(due)))
            else:
                for lease in due:
                    self._renew(lease, self._store)

    def _renew(self, lease: Lease, store: ReportStore) -> None:
        try:
            snapshot = store.renew(lease.report_id, owner=lease.owner, lease_seconds=self._lease)
        except LeaseLost:
            log.warning("lease on %s lost; stopping the run", lease.report_id)
            lease.lost = True
            self._flag(lease)
            return
        except Exception:
            log.warning("lease renewal of %s failed; will retry", lease.report_id, exc_info=True)
            return
        if snapshot.deleted:
            log.info("report %s was deleted; stopping the run", lease.report_id)
            lease.deleted = True
            self._flag(lease)
            return
        lease.record = snapshot.record
        if snapshot.cancel_requested:
            self._flag(lease, keep=True)
        for hook in lease.hooks:
            try:
                hook()
            except Exception:
                log.warning("heartbeat hook failed for %s", lease.report_id, exc_info=True)

    def _flag(self, lease: Lease, *, keep: bool = False) -> None:
        """Set the report's cancel flag; a lost or deleted report is renewed no more."""
        with contextlib.suppress(OSError):  # the run ended and removed its directory
            lease.cancel.set()
        if not keep:
            self.close(lease)


class LateDeleteCheck:
    """Looks once more for a tombstone a replication margin after a terminal write. A
    DeleteReport in another region just before our write reaches this region within the
    margin (>= 2 x the replication lag); our write then won last-writer-wins over the
    deletion of the report item, and this removes it again. One daemon thread per process,
    started on first use, that checks every report then due in one batched read; best
    effort (a process that dies first leaves the item hidden by its tombstone until its
    TTL)."""

    def __init__(
        self,
        find_deleted: Callable[[Sequence[str]], set[str]],
        remove: Callable[[str, ResultInfo | None], None],
        delay: float,
    ) -> None:
        self._find_deleted = find_deleted
        self._remove = remove
        self._delay = delay
        self._due: list[tuple[float, int, str, ResultInfo | None]] = []
        self._order = itertools.count()  # ties never compare the results
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self.removed = 0  # reports found deleted by a late check (tests, logs)

    def schedule(self, report_id: str, result: ResultInfo | None) -> None:
        with self._wakeup:
            due = time.monotonic() + self._delay
            heapq.heappush(self._due, (due, next(self._order), report_id, result))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="late-delete-check", daemon=True
                )
                self._thread.start()
            self._wakeup.notify()

    @property
    def pending(self) -> int:
        with self._wakeup:
            return len(self._due)

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._wakeup.wait(timeout)
                now = time.monotonic()
                due: list[tuple[str, ResultInfo | None]] = []
                while self._due and self._due[0][0] <= now:
                    _, _, report_id, result = heapq.heappop(self._due)
                    due.append((report_id, result))
            self._check(due)

    def _check(self, due: Sequence[tuple[str, ResultInfo | None]]) -> None:
        try:
            deleted = self._find_deleted([report_id for report_id, _ in due])
        except Exception:
            log.warning("late tombstone check of %d reports failed", len(due), exc_info=True)
            return
        for report_id, result in due:
            if report_id not in deleted:
                continue
            try:
                self._remove(report_id, result)
                self.removed += 1
            except Exception:
                log.warning("removing late-deleted %s failed", report_id, exc_info=True)


@dataclass
class _Ran:
    """What running a claimed report produced, before its terminal write."""

    state: State
    result: ResultInfo | None = None
    error: tuple[str, str] | None = None


@dataclass
class _Claimed:
    """A report of a batch that this run holds."""

    index: int
    task: TaskRecord
    valid: validation.ValidSubmit
    owner: str
    started: float
    record: ReportRecord | None = None  # as the claim wrote it
    lease: Lease | None = None
    ran: _Ran | None = None


class Runner:
    def __init__(
        self,
        services: Services,
        *,
        execute: GeneratorExecutor = run_in_process,
        owner_prefix: str = "worker",
        concurrency: int = 1,
        caps: RunCaps | None = None,
        io_threads: int = IO_THREADS,
    ) -> None:
        """`concurrency`: how many reports this process runs at once (they share its
        memory and CPUs). `io_threads`: how many DynamoDB writes of a batch are in flight
        at once (one pool for the process's life, never a thread per report)."""
        self._s = services
        self._execute = execute
        self._owner_prefix = owner_prefix
        self._concurrency = max(1, concurrency)
        self._caps = caps or RunCaps()
        self._io_threads = io_threads
        self._io: ThreadPoolExecutor | None = None
        self._lazy = threading.Lock()
        self.late_deletes = LateDeleteCheck(
            services.store.deleted_among,
            self._remove_deleted,
            services.settings.standby_margin_seconds,
        )

    @property
    def services(self) -> Services:
        return self._s

    def new_owner(self) -> str:
        """A token unique to one attempt: it marks our writes as ours."""
        return f"{self._owner_prefix}:{uuid.uuid4().hex}"

    def _pool(self) -> ThreadPoolExecutor:
        with self._lazy:
            if self._io is None:
                self._io = ThreadPoolExecutor(self._io_threads, thread_name_prefix="runner-io")
            return self._io

    def _scratch_root(self) -> str:
        return scratch_root()

    def fail_permanently(
        self, task: TaskRecord, *, reason: str, message: str, owner: str | None = None
    ) -> RunResult:
        """End a report FAILED that cannot run (invalid, or out of retries)."""
        record = self._s.store.fail_unstarted(
            task,
            reason=reason,
            message=message,
            ttl_seconds=task_ttl(task),
            owner=owner or self.new_owner(),
        )
        if record is None:
            return RunResult(Outcome.NOOP)
        self._s.notifier.publish(record)
        return RunResult(Outcome.FAILED, record)

    def _validate(self, task: TaskRecord) -> validation.ValidSubmit | RunResult:
        """The valid request, or the FAILED end of one that cannot run."""
        forbidden = _input_forbidden(task, self._s.inputs)
        if forbidden is not None:
            return self.fail_permanently(task, reason=INPUT_FORBIDDEN, message=forbidden)
        try:
            return validation.validate_submit(
                task.request, self._s.registry, tenant=task.tenant, inputs=self._s.inputs
            )
        except InvalidArgument as err:
            return self.fail_permanently(task, reason="INVALID_PARAMS", message=err.message)

    def _claimed_or_result(self, task: TaskRecord, claim: ClaimResult) -> RunResult | None:
        """None when the claim is ours to run; else what the claim ended in."""
        if claim.outcome is Claim.CLAIMED:
            return None
        if claim.outcome is Claim.TERMINAL:
            return RunResult(Outcome.NOOP, claim.record)
        if claim.outcome is Claim.DELETED:
            assert claim.record is not None
            self._remove_deleted(task.report_id, claim.record.result)
            return RunResult(Outcome.NOOP)
        if claim.outcome is Claim.BUSY:
            wait = max(0.0, (claim.lease_until_ms - time.time() * 1000) / 1000)
            return RunResult(Outcome.BUSY, claim.record, retry_after_seconds=wait)
        assert claim.outcome is Claim.CANCELLED
        assert claim.record is not None
        self._s.notifier.publish(claim.record)
        return RunResult(Outcome.CANCELLED, claim.record)

    def run(
        self,
        task: TaskRecord,
        *,
        heartbeat_hooks: Sequence[Callable[[], None]] = (),
        after_claim: Callable[[ReportRecord], bool] | None = None,
    ) -> RunResult:
        """Run the task. `after_claim` (the multi-region standby) sees the claimed record
        before anything runs; False stands the run down (another region's claim won)."""
        started = time.monotonic()
        valid = self._validate(task)
        if isinstance(valid, RunResult):
            return valid
        owner = self.new_owner()
        slot = Wanted(task.tenant, task.report_id, owner)
        if not self.take_slots([slot]).has(slot):
            return RunResult(Outcome.DEFERRED)
        hooks = list(heartbeat_hooks)
        if self._s.slots is not None:
            slots = self._s.slots
            hooks.append(lambda: slots.renew([slot]))
        try:
            return self._run_valid(
                task, valid, owner, started, heartbeat_hooks=hooks, after_claim=after_claim
            )
        finally:
            self.give_back_slots([slot])

    def take_slots(self, runs: Sequence[Wanted]) -> Grant:
        """Slots for as many runs as their tenants' caps allow (all, without slots)."""
        if self._s.slots is None or not runs:
            return Grant(frozenset(), fail_open=True)
        return self._s.slots.acquire(runs)

    def give_back_slots(self, runs: Sequence[Wanted]) -> None:
        if self._s.slots is not None and runs:
            self._s.slots.release(runs)

    def _run_valid(
        self,
        task: TaskRecord,
        valid: validation.ValidSubmit,
        owner: str,
        started: float,
        *,
        heartbeat_hooks: Sequence[Callable[[], None]],
        after_claim: Callable[[ReportRecord], bool] | None,
    ) -> RunResult:
        """`run` once the task is valid and holds its tenant slot."""
        settings = self._s.settings
        claim = self._s.store.claim(
            task, owner=owner, region=settings.region, lease_seconds=settings.worker_lease_seconds
        )
        ended = self._claimed_or_result(task, claim)
        if ended is not None:
            return ended
        assert claim.record is not None
        if after_claim is not None and not after_claim(claim.record):
            return RunResult(Outcome.NOOP, claim.record)
        self._s.notifier.publish(claim.record)

        item = _Claimed(0, task, valid, owner, started)
        root = self._scratch_root()
        with tempfile.TemporaryDirectory(prefix="reportgrid-", dir=root) as work_dir:
            item.lease = Lease(
                task.report_id, owner, _cancel_flag(work_dir), claim.record, heartbeat_hooks
            )
            with Heartbeat(
                self._s.store, [item.lease], lease_seconds=settings.worker_lease_seconds
            ):
                item.ran = self._run_claimed(item, work_dir, shared_root=root)
        if self._stood_down(item):
            return RunResult(Outcome.NOOP)
        try:
            stored = self._s.store.finish(
                task.report_id,
                owner=owner,
                state=item.ran.state,
                ttl_seconds=valid.ttl_seconds,
                result=item.ran.result,
                error=item.ran.error,
            )
        except Exception as err:
            self._finish_failed(item, err)
            return RunResult(Outcome.NOOP)
        # A tombstone written in this region between our check and our write: undo it now;
        # one written in another region before our write arrives within the margin.
        if self._remove_if_deleted(task.report_id, item.ran.result):
            return RunResult(Outcome.NOOP)
        return self._ended(item, stored)

    def run_batch(self, tasks: Sequence[TaskRecord]) -> list[RunResult | BaseException]:
        """Run a Kinesis batch of light tasks: what `run` does for each, at a fraction of
        the cost. One BatchGetItem per 33 reports for the claims' reads, the claims' writes
        in flight together, the reports run one after another (they share the process's
        DuckDB database) under one heartbeat for all, the terminal writes' reads batched
        and their writes in flight together, and one tombstone read for the batch after
        them. Each report's outcome, or the exception `run` would have raised for it (the
        caller retries a transient one). A report id twice in the batch runs its second
        task after the first has ended (it is a no-op then), as `run` one by one would."""
        results: list[RunResult | BaseException | None] = [None] * len(tasks)
        first: dict[str, int] = {}
        later: list[int] = []
        valid: list[tuple[int, validation.ValidSubmit]] = []
        for i, task in enumerate(tasks):
            if task.report_id in first:
                later.append(i)
                continue
            first[task.report_id] = i
            checked = self._guarded(self._validate, task)
            if isinstance(checked, validation.ValidSubmit):
                valid.append((i, checked))
            else:
                results[i] = checked
        # Each tenant's slots for as many of its tasks as its cap allows (in stream order);
        # the others are put off by the caller, so the shard moves on to other tenants.
        owners = {i: self.new_owner() for i, _ in valid}
        wanted = {i: Wanted(tasks[i].tenant, tasks[i].report_id, owners[i]) for i, _ in valid}
        try:
            grant = self.take_slots(list(wanted.values()))
        except Exception as err:  # the quota read or the cache in a way not foreseen
            log.warning("the tenant slot check failed; running the batch uncapped: %s", err)
            grant = Grant(frozenset(), fail_open=True)
        for i, _ in valid:
            if not grant.has(wanted[i]):
                results[i] = RunResult(Outcome.DEFERRED)
        valid = [(i, v) for i, v in valid if grant.has(wanted[i])]
        held = [wanted[i] for i, _ in valid]
        try:
            claimed = self._claim_batch(tasks, valid, results, owners)
            running = {id(wanted[item.index]) for item in claimed}
            # Reports that will not run here (done, busy, cancelled) free their slot now.
            self.give_back_slots([w for w in held if id(w) not in running])
            held = [wanted[item.index] for item in claimed]
            if claimed:
                self._run_batch_claimed(claimed, results, slots=held)
        finally:
            self.give_back_slots(held)
        for i in later:
            results[i] = self._guarded(self.run, tasks[i])
        return [r if r is not None else RuntimeError("no outcome") for r in results]

    def _slot_renewal(self, runs: Sequence[Wanted]) -> Callable[[], None] | None:
        """The heartbeat's renewal of a batch's slots (one script call per tenant)."""
        slots = self._s.slots
        if slots is None or not runs:
            return None
        return lambda: slots.renew(runs)

    @staticmethod
    def _guarded(call: Callable[[TaskRecord], _T], task: TaskRecord) -> _T | BaseException:
        try:
            return call(task)
        except Exception as err:
            return err

    def _claim_batch(
        self,
        tasks: Sequence[TaskRecord],
        valid: Sequence[tuple[int, validation.ValidSubmit]],
        results: list[RunResult | BaseException | None],
        owners: Mapping[int, str],
    ) -> list[_Claimed]:
        settings = self._s.settings
        store = self._s.store
        try:
            store = store.with_snapshots(store.read_many([tasks[i].report_id for i, _ in valid]))
        except (Unavailable, StoreRejected):
            log.warning("batched read failed; each claim reads its own", exc_info=True)
        started = time.monotonic()
        items = [_Claimed(i, tasks[i], v, owners[i], started) for i, v in valid]

        def claim(item: _Claimed) -> ClaimResult:
            return store.claim(
                item.task,
                owner=item.owner,
                region=settings.region,
                lease_seconds=settings.worker_lease_seconds,
            )

        claimed: list[_Claimed] = []
        for item, outcome in zip(items, self._map(claim, items), strict=True):
            if isinstance(outcome, BaseException):
                results[item.index] = outcome
                continue
            try:
                ended = self._claimed_or_result(item.task, outcome)
            except Exception as err:
                results[item.index] = err
                continue
            if ended is not None:
                results[item.index] = ended
                continue
            assert outcome.record is not None
            item.record = outcome.record
            claimed.append(item)
        # The batch's RUNNING notifications in one Redis round trip, after its claims.
        self._s.notifier.publish_many([item.record for item in claimed if item.record])
        return claimed

    def _run_batch_claimed(
        self,
        claimed: list[_Claimed],
        results: list[RunResult | BaseException | None],
        *,
        slots: Sequence[Wanted] = (),
    ) -> None:
        settings = self._s.settings
        root = self._scratch_root()
        dirs = {id(item): tempfile.mkdtemp(dir=root) for item in claimed}
        for item in claimed:
            item.lease = Lease(
                item.task.report_id, item.owner, _cancel_flag(dirs[id(item)]), item.record
            )
        finishing: list[_Claimed] = []
        try:
            with Heartbeat(
                self._s.store,
                [item.lease for item in claimed if item.lease is not None],
                lease_seconds=settings.worker_lease_seconds,
                pool=self._pool(),
                each_beat=self._slot_renewal(slots),
            ) as heartbeat:
                for item in claimed:
                    assert item.lease is not None
                    try:
                        item.ran = self._run_claimed(item, dirs[id(item)], shared_root=root)
                    except Exception as err:
                        heartbeat.close(item.lease)
                        results[item.index] = err
                        continue
                    finally:
                        shutil.rmtree(dirs[id(item)], ignore_errors=True)
                    if self._stood_down(item):
                        heartbeat.close(item.lease)
                        results[item.index] = RunResult(Outcome.NOOP)
                    else:
                        # Still renewed while the batch's later reports run: its terminal
                        # write comes after them all (_finish_batch), and a light run may
                        # take longer than the lease.
                        finishing.append(item)
        finally:
            for path in dirs.values():
                shutil.rmtree(path, ignore_errors=True)
        if finishing:
            self._finish_batch(finishing, results)

    def _finish_batch(
        self, items: list[_Claimed], results: list[RunResult | BaseException | None]
    ) -> None:
        """The terminal writes: one batched read, then each report's conditional PutItem
        (ReportStore.finish, so each keeps its own condition, its lost-reply recognition
        and the arbiter), several in flight at once. Not BatchWriteItem: it takes no
        condition, and a terminal write without its state-machine and revision condition
        could overwrite a takeover's run or resurrect a deleted report. Not
        TransactWriteItems either: it is all-or-nothing, so one cancelled or deleted report
        would fail the 99 others' writes, and DynamoDB bills each item of a transaction
        twice (2 write units per KB instead of 1)."""
        store = self._s.store
        try:
            # Our own item as our last write left it, with its intents read now: only the
            # intents can have changed unless another writer took the report over, and
            # then the write's condition fails and it reads the item again.
            found = store.intents_many([item.task.report_id for item in items])
            store = store.with_snapshots(
                {
                    rid: Snapshot(rid, lease.record, snapshot.cancel, snapshot.deleted)
                    for rid, snapshot, lease in (
                        (i.task.report_id, found[i.task.report_id], i.lease) for i in items
                    )
                    if lease is not None and lease.record is not None
                }
            )
        except (Unavailable, StoreRejected):
            log.warning("batched read failed; each terminal write reads its own", exc_info=True)

        def finish(item: _Claimed) -> ReportRecord:
            assert item.ran is not None
            return store.finish(
                item.task.report_id,
                owner=item.owner,
                state=item.ran.state,
                ttl_seconds=item.valid.ttl_seconds,
                result=item.ran.result,
                error=item.ran.error,
            )

        written: list[tuple[_Claimed, ReportRecord]] = []
        for item, outcome in zip(items, self._map(finish, items), strict=True):
            if isinstance(outcome, BaseException):
                try:
                    self._finish_failed(item, outcome)
                    results[item.index] = RunResult(Outcome.NOOP)
                except Exception as err:
                    results[item.index] = err
                continue
            written.append((item, outcome))
        if not written:
            return
        # A tombstone written in this region between the reads and the writes: undo them
        # now (one read for the batch); one from another region within the late check.
        try:
            deleted = self._s.store.deleted_among([item.task.report_id for item, _ in written])
        except Exception as err:
            for item, _ in written:
                results[item.index] = err
            return
        ended: list[ReportRecord] = []
        for item, stored in written:
            assert item.ran is not None
            try:
                if item.task.report_id in deleted:
                    self._remove_deleted(item.task.report_id, item.ran.result)
                    results[item.index] = RunResult(Outcome.NOOP)
                else:
                    results[item.index] = self._ended(item, stored, publish=False)
                    ended.append(stored)
            except Exception as err:
                results[item.index] = err
        # Their terminal notifications in one Redis round trip (each still once per state).
        self._s.notifier.publish_many(ended)

    def _map(
        self, call: Callable[[_Claimed], _T], items: Sequence[_Claimed]
    ) -> list[_T | BaseException]:
        """`call` on each item, several at once on the I/O pool; each result or exception."""
        if len(items) == 1:
            try:
                return [call(items[0])]
            except Exception as err:
                return [err]
        futures = [self._pool().submit(call, item) for item in items]
        out: list[_T | BaseException] = []
        for future in futures:
            try:
                out.append(future.result())
            except Exception as err:
                out.append(err)
        return out

    def _ended(self, item: _Claimed, stored: ReportRecord, *, publish: bool = True) -> RunResult:
        """`publish=False`: the caller publishes the record (a batch's, together)."""
        self.late_deletes.schedule(item.task.report_id, item.ran.result if item.ran else None)
        if publish:
            self._s.notifier.publish(stored)
        duration = int((time.monotonic() - item.started) * 1000)
        return RunResult(Outcome(stored.state.value), stored, duration_ms=duration)

    def _stood_down(self, item: _Claimed) -> bool:
        """After the run: a report deleted or taken over meanwhile writes nothing more and
        removes what it wrote."""
        lease, ran = item.lease, item.ran
        assert lease is not None
        assert ran is not None
        if lease.deleted:
            self._remove_deleted(item.task.report_id, ran.result, report_item=False)
            return True
        if lease.lost:
            # The edge's delete removes the report item: that also ends our lease.
            self._remove_if_deleted(item.task.report_id, ran.result, report_item=False)
            return True
        return False

    def _finish_failed(self, item: _Claimed, err: BaseException) -> None:
        """The terminal write did not happen: a deleted report removes its result, a lost
        one checks for a tombstone; anything else is raised (transient: after giving the
        lease back so that the redelivery takes over now instead of after the lease)."""
        report_id = item.task.report_id
        result = item.ran.result if item.ran else None
        if isinstance(err, ReportDeleted):
            log.info("report %s was deleted before it finished; not writing it", report_id)
            self._remove_deleted(report_id, result, report_item=False)
            return
        if isinstance(err, LeaseLost):
            log.warning("report %s was taken over before it finished here", report_id)
            self._remove_if_deleted(report_id, result, report_item=False)
            return
        if is_transient_error(err):
            self._s.store.release(report_id, owner=item.owner)
        raise err

    def _run_claimed(
        self, item: _Claimed, work_dir: str, *, shared_root: str | None = None
    ) -> _Ran:
        """Fetch the input, generate, store the result: the report's end state. A transient
        error gives the lease back and propagates. `shared_root`: the directory holding
        work_dir, for the process's shared DuckDB database (one report at a time)."""
        settings = self._s.settings
        task, valid, lease = item.task, item.valid, item.lease
        assert lease is not None
        cancel = lease.cancel
        source = task.request.input.WhichOneof("source") if task.request.HasField("input") else None
        cost = valid.kind.cost_for(source)
        run = run_limits(
            cost, settings, concurrency=self._concurrency, caps=self._caps, now=time.time()
        )
        shared = shared_root if cost is CostClass.LIGHT and self._concurrency == 1 else None
        try:
            data = self._fetch_input(task, work_dir, run)
            cancel.check()
            request = GenerateRequest(
                report_id=task.report_id,
                params=valid.params,
                output_format=valid.output_format,
                work_dir=work_dir,
                input=data,
                cancel=cancel,
                limits=run,
                scratch_root=shared,
            )
            generated = self._execute(valid.kind.generator, request)
            cancel.check()
            result = store_result(
                generated,
                report_id=task.report_id,
                generator_version=valid.kind.version,
                s3=self._s.s3,
                bucket=settings.results_bucket,
                region=settings.region,
            )
            return _Ran(State.SUCCEEDED, result)
        except Cancelled:
            return _Ran(State.CANCELLED)
        except ReportFailure as failure:
            return _Ran(State.FAILED, error=(failure.reason, failure.message))
        except Exception as err:
            if is_transient_error(err):
                self._s.store.release(task.report_id, owner=item.owner)
                raise
            log.exception("generator of %s (%s) failed", task.report_id, valid.kind.name)
            return _Ran(State.FAILED, error=("GENERATOR_FAILED", GENERATOR_FAILED_MESSAGE))

    # -- deleted reports ---------------------------------------------------------------

    def _remove_if_deleted(
        self, report_id: str, result: ResultInfo | None, *, report_item: bool = True
    ) -> bool:
        """If the report has a tombstone, remove what this run wrote; True if it had."""
        if not self._s.store.is_deleted(report_id):
            return False
        self._remove_deleted(report_id, result, report_item=report_item)
        return True

    def _remove_deleted(
        self, report_id: str, result: ResultInfo | None, *, report_item: bool = True
    ) -> None:
        """Remove a deleted report's S3 result and (if it came back) its report item."""
        log.info("report %s is deleted; removing what was written for it", report_id)
        settings = self._s.settings
        if result is not None and result.s3_key and settings.results_bucket:
            try:
                delete_result_object(self._s.s3, settings.results_bucket, result.s3_key)
            except (ClientError, BotoCoreError) as err:
                raise Unavailable(f"could not delete the result of deleted {report_id}") from err
            if settings.replica_results_bucket:
                # S3 replication does not carry version deletes. Best effort: the peer
                # region may be the one that is down.
                try:
                    delete_result_object(self._s.s3, settings.replica_results_bucket, result.s3_key)
                except (ClientError, BotoCoreError):
                    log.warning("could not delete the replica of %s's result", report_id)
        if report_item:
            self._s.store.remove(report_id)

    def _fetch_input(self, task: TaskRecord, work_dir: str, run: RunLimits) -> InputData | None:
        request = task.request
        if not request.HasField("input"):
            return None
        source = request.input.WhichOneof("source")
        fmt = request.input.format
        path = os.path.join(work_dir, "input." + pb.DataFormat.Name(fmt).lower())
        if source == "inline_data":
            with open(path, "wb") as f:
                f.write(request.input.inline_data)
            return InputData(fmt, path)
        uri = request.input.s3_uri
        # Checked again right before the fetch, against the task's own tenant: nothing
        # but this decides which object is read (the task may not come from an edge).
        try:
            bucket, key = validation.tenant_input_location(
                uri, tenant=task.tenant, inputs=self._s.inputs
            )
        except validation.InputForbidden as err:
            raise ReportFailure(INPUT_FORBIDDEN, f"input.s3_uri {err}") from None
        assert self._s.tenant_inputs is not None
        s3 = self._s.tenant_inputs.s3_for(task.tenant)
        try:
            download_capped(s3, bucket, key, path, run)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in _S3_MISSING:
                raise ReportFailure(
                    "INPUT_UNREADABLE", f"{uri} does not exist or Reportgrid may not read it"
                ) from None
            raise Unavailable(f"S3 did not return {uri}") from err
        except BotoCoreError as err:
            raise Unavailable(f"S3 did not return {uri}") from err
        return InputData(fmt, path)
