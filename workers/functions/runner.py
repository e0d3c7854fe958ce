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

import enum
import heapq
import itertools
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from functions.input_access import TenantInputs, boto3_tenant_inputs
from functions.notify import Notifier
from functions.store import (
    Claim,
    LeaseLost,
    ReportDeleted,
    ReportStore,
    is_transient,
    task_ttl,
)
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

Executor = Callable[[Generator, GenerateRequest], GenerateResult]


def run_in_process(generator: Generator, request: GenerateRequest) -> GenerateResult:
    result: GenerateResult = generator(request)
    return result


class Outcome(enum.Enum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NOOP = "NOOP"  # already terminal, deleted, or another worker took it over
    BUSY = "BUSY"  # another worker holds a live lease: try again after retry_after


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
    inputs: validation.InputPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = validation.InputPolicy.of(self.settings.input_buckets)
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


def delete_result_object(s3: S3Client, bucket: str, key: str) -> None:
    """Delete every version of a result object (the buckets are versioned, and a plain
    delete would only hide the data behind a delete marker)."""
    versions = versions_of(s3.list_object_versions(Bucket=bucket, Prefix=key), key)
    if versions:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True})


class Heartbeat:
    """Renews the lease while a report runs, sets the cancel flag when a cancellation is
    requested, the report is deleted or the lease is lost, and runs the runtime's extra
    hooks (SQS visibility)."""

    def __init__(
        self,
        store: ReportStore,
        report_id: str,
        *,
        owner: str,
        lease_seconds: float,
        cancel: CancelFlag,
        hooks: Sequence[Callable[[], None]] = (),
    ) -> None:
        self._store = store
        self._report_id = report_id
        self._owner = owner
        self._lease = lease_seconds
        self._cancel = cancel
        self._hooks = hooks
        self._stop = threading.Event()
        self.lost = False
        self.deleted = False
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{report_id}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        interval = min(self._lease / 3, MAX_HEARTBEAT_SECONDS)
        while not self._stop.wait(interval):
            try:
                snapshot = self._store.renew(
                    self._report_id, owner=self._owner, lease_seconds=self._lease
                )
            except LeaseLost:
                log.warning("lease on %s lost; stopping the run", self._report_id)
                self.lost = True
                self._cancel.set()
                return
            except Exception:
                log.warning(
                    "lease renewal of %s failed; will retry", self._report_id, exc_info=True
                )
                continue
            if snapshot.deleted:
                log.info("report %s was deleted; stopping the run", self._report_id)
                self.deleted = True
                self._cancel.set()
                return
            if snapshot.cancel_requested:
                self._cancel.set()
            for hook in self._hooks:
                try:
                    hook()
                except Exception:
                    log.warning("heartbeat hook failed for %s", self._report_id, exc_info=True)


class LateDeleteCheck:
    """Looks once more for a tombstone a replication margin after a terminal write. A
    DeleteReport in another region just before our write reaches this region within the
    margin (>= 2 x the replication lag); our write then won last-writer-wins over the
    deletion of the report item, and this removes it again. One daemon thread per process,
    started on first use; best effort (a process that dies first leaves the item hidden by
    its tombstone until its TTL)."""

    def __init__(self, remove: Callable[[str, ResultInfo | None], bool], delay: float) -> None:
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
                _, _, report_id, result = heapq.heappop(self._due)
            try:
                if self._remove(report_id, result):
                    self.removed += 1
            except Exception:
                log.warning("late tombstone check of %s failed", report_id, exc_info=True)


class Runner:
    def __init__(
        self,
        services: Services,
        *,
        execute: Executor = run_in_process,
        owner_prefix: str = "worker",
        concurrency: int = 1,
        caps: RunCaps | None = None,
    ) -> None:
        """`concurrency`: how many reports this process runs at once (they share its
        memory and CPUs)."""
        self._s = services
        self._execute = execute
        self._owner_prefix = owner_prefix
        self._concurrency = max(1, concurrency)
        self._caps = caps or RunCaps()
        self.late_deletes = LateDeleteCheck(
            self._remove_if_deleted, services.settings.standby_margin_seconds
        )

    @property
    def services(self) -> Services:
        return self._s

    def new_owner(self) -> str:
        """A token unique to one attempt: it marks our writes as ours."""
        return f"{self._owner_prefix}:{uuid.uuid4().hex}"

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
        forbidden = _input_forbidden(task, self._s.inputs)
        if forbidden is not None:
            return self.fail_permanently(task, reason=INPUT_FORBIDDEN, message=forbidden)
        try:
            valid = validation.validate_submit(
                task.request, self._s.registry, tenant=task.tenant, inputs=self._s.inputs
            )
        except InvalidArgument as err:
            return self.fail_permanently(task, reason="INVALID_PARAMS", message=err.message)

        owner = self.new_owner()
        settings = self._s.settings
        claim = self._s.store.claim(
            task, owner=owner, region=settings.region, lease_seconds=settings.worker_lease_seconds
        )
        if claim.outcome is Claim.TERMINAL:
            return RunResult(Outcome.NOOP, claim.record)
        if claim.outcome is Claim.DELETED:
            assert claim.record is not None
            self._remove_deleted(task.report_id, claim.record.result)
            return RunResult(Outcome.NOOP)
        if claim.outcome is Claim.BUSY:
            wait = max(0.0, (claim.lease_until_ms - time.time() * 1000) / 1000)
            return RunResult(Outcome.BUSY, claim.record, retry_after_seconds=wait)
        if claim.outcome is Claim.CANCELLED:
            assert claim.record is not None
            self._s.notifier.publish(claim.record)
            return RunResult(Outcome.CANCELLED, claim.record)
        assert claim.record is not None
        if after_claim is not None and not after_claim(claim.record):
            return RunResult(Outcome.NOOP, claim.record)
        self._s.notifier.publish(claim.record)

        record = self._run_claimed(task, valid, owner, heartbeat_hooks)
        if record is None:
            return RunResult(Outcome.NOOP)
        self._s.notifier.publish(record)
        duration = int((time.monotonic() - started) * 1000)
        return RunResult(Outcome(record.state.value), record, duration_ms=duration)

    def _run_claimed(
        self,
        task: TaskRecord,
        valid: validation.ValidSubmit,
        owner: str,
        hooks: Sequence[Callable[[], None]],
    ) -> ReportRecord | None:
        settings = self._s.settings
        report_id = task.report_id
        state: State
        result = None
        error: tuple[str, str] | None = None
        source = task.request.input.WhichOneof("source") if task.request.HasField("input") else None
        run = run_limits(
            valid.kind.cost_for(source),
            settings,
            concurrency=self._concurrency,
            caps=self._caps,
            now=time.time(),
        )
        with tempfile.TemporaryDirectory(prefix="reportgrid-") as work_dir:
            cancel = CancelFlag(os.path.join(work_dir, "cancel"))
            heartbeat = Heartbeat(
                self._s.store,
                report_id,
                owner=owner,
                lease_seconds=settings.worker_lease_seconds,
                cancel=cancel,
                hooks=hooks,
            )
            try:
                with heartbeat:
                    data = self._fetch_input(task, work_dir, run)
                    cancel.check()
                    request = GenerateRequest(
                        report_id=report_id,
                        params=valid.params,
                        output_format=valid.output_format,
                        work_dir=work_dir,
                        input=data,
                        cancel=cancel,
                        limits=run,
                    )
                    generated = self._execute(valid.kind.generator, request)
                    cancel.check()
                    result = store_result(
                        generated,
                        report_id=report_id,
                        generator_version=valid.kind.version,
                        s3=self._s.s3,
                        bucket=settings.results_bucket,
                        region=settings.region,
                    )
                    state = State.SUCCEEDED
            except Cancelled:
                state = State.CANCELLED
            except ReportFailure as failure:
                state, error = State.FAILED, (failure.reason, failure.message)
            except Exception as err:
                if is_transient_error(err):
                    self._s.store.release(report_id, owner=owner)
                    raise
                log.exception("generator of %s (%s) failed", report_id, valid.kind.name)
                state, error = State.FAILED, ("GENERATOR_FAILED", GENERATOR_FAILED_MESSAGE)
            if heartbeat.deleted:
                self._remove_deleted(report_id, result, report_item=False)
                return None
            if heartbeat.lost:
                # The edge's delete removes the report item: that also ends our lease.
                self._remove_if_deleted(report_id, result, report_item=False)
                return None
        try:
            stored = self._s.store.finish(
                report_id,
                owner=owner,
                state=state,
                ttl_seconds=valid.ttl_seconds,
                result=result,
                error=error,
            )
        except ReportDeleted:
            log.info("report %s was deleted before it finished; not writing it", report_id)
            self._remove_deleted(report_id, result, report_item=False)
            return None
        except LeaseLost:
            log.warning("report %s was taken over before it finished here", report_id)
            self._remove_if_deleted(report_id, result, report_item=False)
            return None
        except Exception as err:
            if is_transient_error(err):
                # The terminal write did not happen: give the lease back so that the
                # redelivery takes over now instead of after the lease.
                self._s.store.release(report_id, owner=owner)
            raise
        # A tombstone written in this region between our check and our write: undo it now;
        # one written in another region before our write arrives within the margin.
        if self._remove_if_deleted(report_id, result):
            return None
        self.late_deletes.schedule(report_id, result)
        return stored

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
