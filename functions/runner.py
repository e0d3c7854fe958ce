"""One report run, shared by both runtimes: validate, claim under a lease, fetch the
input, generate (in-process or in a process pool), store the result, write the terminal
state, publish it.

Errors sort into three kinds:
- the user's (bad params, unreadable input, a missing column): the report ends FAILED,
  never retried;
- transient (throttling, timeouts, 5xx, a broken worker process): the lease is released
  and the error propagates, so the runtime redelivers the task;
- lost lease (another worker took over): we stop and write nothing.
"""

from __future__ import annotations

import enum
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import validation
from reportgrid.engine.exceptions import Cancelled
from reportgrid.engine.kinds import REGISTRY
from reportgrid.engine.registry import Generator, Registry
from reportgrid.engine.request import CancelFlag, GenerateRequest, GenerateResult, InputData
from reportgrid.errors import InvalidArgument, ReportFailure, Unavailable
from reportgrid.notify import Notifier
from reportgrid.records import ReportRecord
from reportgrid.results import store_result
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.store import Claim, LeaseLost, ReportStore, is_transient, task_ttl
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb

log = logging.getLogger(__name__)

GENERATOR_FAILED_MESSAGE: Final = (
    "the report could not be generated because of an internal error; "
    "submit it again or contact support with the report id"
)
_S3_MISSING: Final = frozenset({"404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied"})
# The longest pause between cancellation checks of a running report.
MAX_HEARTBEAT_SECONDS: Final = 5.0

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
    s3: Any
    notifier: Notifier
    registry: Registry = field(default=REGISTRY)


def is_transient_error(err: BaseException) -> bool:
    return is_transient(err) or isinstance(err, BrokenProcessPool)


class Heartbeat:
    """Renews the lease while a report runs, sets the cancel flag when a cancellation is
    requested (or the lease is lost), and runs the runtime's extra hooks (SQS visibility)."""

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
                record = self._store.renew(
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
            if record.cancel_requested:
                self._cancel.set()
            for hook in self._hooks:
                try:
                    hook()
                except Exception:
                    log.warning("heartbeat hook failed for %s", self._report_id, exc_info=True)


class Runner:
    def __init__(
        self,
        services: Services,
        *,
        execute: Executor = run_in_process,
        owner_prefix: str = "worker",
    ) -> None:
        self._s = services
        self._execute = execute
        self._owner_prefix = owner_prefix

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
        try:
            valid = validation.validate_submit(task.request, self._s.registry)
        except InvalidArgument as err:
            return self.fail_permanently(task, reason="INVALID_PARAMS", message=err.message)

        owner = self.new_owner()
        settings = self._s.settings
        claim = self._s.store.claim(
            task, owner=owner, region=settings.region, lease_seconds=settings.worker_lease_seconds
        )
        if claim.outcome is Claim.TERMINAL:
            return RunResult(Outcome.NOOP, claim.record)
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
                    data = self._fetch_input(task.request, work_dir)
                    cancel.check()
                    request = GenerateRequest(
                        report_id=report_id,
                        params=valid.params,
                        output_format=valid.output_format,
                        work_dir=work_dir,
                        input=data,
                        cancel=cancel,
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
            if heartbeat.lost:
                return None
        try:
            return self._s.store.finish(
                report_id,
                owner=owner,
                state=state,
                ttl_seconds=valid.ttl_seconds,
                result=result,
                error=error,
            )
        except LeaseLost:
            log.warning("report %s was taken over before it finished here", report_id)
            return None
        except Exception as err:
            if is_transient_error(err):
                # The terminal write did not happen: give the lease back so that the
                # redelivery takes over now instead of after the lease.
                self._s.store.release(report_id, owner=owner)
            raise

    def _fetch_input(self, request: pb.SubmitReportRequest, work_dir: str) -> InputData | None:
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
        bucket, key = validation.parse_s3_uri(uri)
        try:
            self._s.s3.download_file(bucket, key, path)
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
