"""The worker process of the worker-light / worker-heavy scenarios (bench/worker.py):
the real stream-worker Lambda handler (light) or the real queue worker loop with its
process pool (heavy), against the moto server and redis-server of the parent, with the
deployed worker size from the environment.

    python -m bench.worker_child light|heavy --reports N [--batch B]

It speaks lines on stdin/stdout so that the parent reads this process's CPU (and moto's)
around the measured part only: it prepares the tasks and warms up (imports, clients, the
DuckDB database, one batch), prints `ready`, waits for `go`, handles the N reports, prints
`done <json>` (AWS calls counted by a botocore `before-call` hook on the worker's own
clients, one per API call, retries not counted, and the PutItems the store sent through
its lean client, counted by that client: there, retries are counted), then counts the
reports back (outside the measured part) and prints `counted <json>`.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import cProfile
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.clients import client
from functions.notify import Notifier
from functions.queue_worker.pool import GeneratorPool
from functions.queue_worker.worker import QueueWorker
from functions.runner import Runner, RunResult, Services
from functions.store import ReportStore, store_for
from functions.stream_worker import handler as stream
from reportgrid import tasks
from reportgrid.settings import Settings, load_settings
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from reportgrid.v1 import reports_pb2 as pb

TENANT = "bench-tenant"
LIGHT_PARAMS = {"output_rows": 10}
HEAVY_PARAMS = {"output_rows": 10, "cpu_ms": 0}  # the heavy path's overhead alone
SEED_MAX = 2**31 - 1  # the synthetic kinds' schema: seed 0 .. 2**31 - 1


class Calls:
    """AWS API calls made through the clients it is attached to, by operation."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

        self._lean: list[Any] = []  # the lean clients (reportgrid/aws_json_sync.py)
        self._lean_base: collections.Counter[str] = collections.Counter()  # at clear

    def attach(self, *clients: Any) -> None:
        for c in clients:
            c.meta.events.register("before-call.*.*", self._count)

    def attach_store(self, store: ReportStore) -> None:
        """The store's boto3 client, and its lean DynamoDB client where it has one (the
        code of an older tree has none, or only a lean PutItem)."""
        self.attach(store._ddb)
        self.attach_lean(getattr(store, "_hot", None) or getattr(store, "_writes", None))

    def attach_lean(self, lean: Any) -> None:
        """A lean client's calls from now on (none: older code, or boto3 itself)."""
        http = getattr(lean, "http", None)
        if http is not None:
            self._lean.append(http)
            self._lean_base.update(self._counts_of(http))

    def _lean_counts(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for http in self._lean:
            counts.update(self._counts_of(http))
        return counts

    def clear(self) -> None:
        self.counts.clear()
        self._lean_base = self._lean_counts()

    def snapshot(self) -> dict[str, int]:
        counts = collections.Counter(self.counts)
        counts.update(self._lean_counts())
        counts.subtract(self._lean_base)
        return {name: n for name, n in counts.items() if n}

    @staticmethod
    def _counts_of(http: Any) -> collections.Counter[str]:
        """Calls per operation ("DynamoDB_20120810.PutItem" -> "PutItem"); an older
        client counts only its total, all PutItems."""
        counts: collections.Counter[str] = collections.Counter()
        by_target = getattr(http, "calls_by_target", None)
        if by_target is None:
            counts["PutItem"] += http.calls
        else:
            for target, n in by_target.items():
                counts[target.rpartition(".")[2]] += n
        return counts

    def _count(self, *, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1


class _Context:
    """What the handler reads of Lambda's context."""

    function_name = "bench-stream-worker"
    function_version = "$LATEST"
    memory_limit_in_mb = 1769
    aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def _context() -> LambdaContext:
    return cast("LambdaContext", _Context())


def make_task(settings: Settings, kind: str, params: dict[str, Any], seed: int) -> TaskRecord:
    request = pb.SubmitReportRequest(kind=kind, output_format=pb.OUTPUT_FORMAT_CSV)
    request.params.update({**params, "seed": seed})
    task = TaskRecord(
        report_id=settings.id_codec().new(TENANT, settings.region).value,
        tenant=TENANT,
        home_region=settings.region,
        request=request,
    )
    task.accept_time.GetCurrentTime()
    return task


def warm_tasks(settings: Settings, kind: str, params: dict[str, Any], n: int) -> list[TaskRecord]:
    """Reports run before the measurement, so that it sees warm caches and a started process
    pool. Valid ones (a failed report would never reach the pool), with seeds the measured
    reports (0, 1, ...) do not use."""
    return [make_task(settings, kind, params, SEED_MAX - i) for i in range(n)]


def check_warm(settings: Settings, warm: list[TaskRecord]) -> None:
    if (states := count_back(settings, warm)) != {"SUCCEEDED": len(warm)}:
        raise SystemExit(f"the warm-up reports did not all succeed: {states}")


def kinesis_event(batch: list[TaskRecord], first_seq: int) -> dict[str, Any]:
    """A batch as the event source mapping delivers it (the Lambda never calls Kinesis)."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": task.report_id,
                    "sequenceNumber": str(first_seq + i),
                    "data": base64.b64encode(tasks.encode(task)).decode(),
                    "approximateArrivalTimestamp": time.time(),
                },
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{first_seq + i}",
                "eventName": "aws:kinesis:record",
            }
            for i, task in enumerate(batch)
        ]
    }


def _services(settings: Settings) -> Services:
    return Services(
        settings=settings,
        store=store_for(settings, client("dynamodb", settings)),  # as the handler builds it
        s3=client("s3", settings),
        notifier=Notifier(settings.redis_url),
    )


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected go")


def run_light(settings: Settings, reports: int, batch: int) -> tuple[list[TaskRecord], Calls]:
    services = _services(settings)
    calls = Calls()
    calls.attach_store(services.store)
    calls.attach(services.s3)
    sqs = client("sqs", settings)
    calls.attach(sqs)
    stream.configure(
        stream.Dependencies(
            runner=Runner(services, owner_prefix="bench"),
            sqs=sqs,
            heavy_queue_url=settings.heavy_queue_url,
        )
    )
    warm = warm_tasks(settings, "synthetic", LIGHT_PARAMS, batch)
    todo = [make_task(settings, "synthetic", LIGHT_PARAMS, i) for i in range(reports)]
    events = [kinesis_event(todo[i : i + batch], 1000 + i) for i in range(0, reports, batch)]
    _check(stream.handler(kinesis_event(warm, 0), _context()))
    check_warm(settings, warm)
    calls.clear()
    _wait_for_go()
    started = time.monotonic()
    with _profiled():
        for event in events:
            _check(stream.handler(event, _context()))
    _done(started, reports, calls)
    return todo, calls


@contextlib.contextmanager
def _profiled() -> Iterator[None]:
    """cProfile of the measured part into $BENCH_WORKER_PROFILE, when set (py-spy is not
    a dependency; this profiles the main thread only)."""
    path = os.environ.get("BENCH_WORKER_PROFILE")
    if not path:
        yield
        return
    # The batch's DynamoDB writes on this thread, so that the profile sees them.
    Runner._map = _sequential_map  # type: ignore[method-assign]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


def _sequential_map(self: Runner, call: Any, items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        try:
            out.append(call(item))
        except Exception as err:
            out.append(err)
    return out


def _check(response: dict[str, Any]) -> None:
    if response.get("batchItemFailures"):
        raise SystemExit(f"records failed: {response['batchItemFailures'][:3]}")


class _Counting(Runner):
    """The queue worker's runner, counting the reports it ended."""

    def __init__(self, *args: Any, expected: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected
        self.ended = 0
        self.all_ended = threading.Event()
        self._count_lock = threading.Lock()

    def run(self, task: TaskRecord, **kwargs: Any) -> RunResult:
        result = super().run(task, **kwargs)
        with self._count_lock:
            self.ended += 1
            if self.ended >= self.expected:
                self.all_ended.set()
        return result


def run_heavy(settings: Settings, reports: int) -> tuple[list[TaskRecord], Calls]:
    assert settings.heavy_queue_url is not None
    services = _services(settings)
    calls = Calls()
    calls.attach_store(services.store)
    calls.attach(services.s3)
    sqs = client("sqs", settings)
    calls.attach(sqs)
    pool = GeneratorPool(settings.worker_concurrency)
    warm = warm_tasks(settings, "synthetic_heavy", HEAVY_PARAMS, 4)
    todo = [make_task(settings, "synthetic_heavy", HEAVY_PARAMS, i) for i in range(reports)]
    feeder = client("sqs", settings)  # not counted: it stands in for the stream worker

    def enqueue(batch: list[TaskRecord]) -> None:
        for start in range(0, len(batch), 10):
            feeder.send_message_batch(
                QueueUrl=settings.heavy_queue_url or "",
                Entries=[
                    {"Id": str(i), "MessageBody": tasks.encode_text(t)}
                    for i, t in enumerate(batch[start : start + 10])
                ],
            )

    def serve(expected: int) -> _Counting:
        runner = _Counting(
            services,
            execute=pool,
            owner_prefix="bench-heavy",
            concurrency=settings.worker_concurrency,
            expected=expected,
        )
        worker = QueueWorker(
            runner,
            sqs=sqs,
            queue_url=settings.heavy_queue_url or "",
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.worker_lease_seconds,
            wait_seconds=1,
        )
        thread = threading.Thread(target=worker.run, kwargs={"stop_grace_seconds": 5.0})
        thread.start()
        if not runner.all_ended.wait(600):
            raise SystemExit(f"only {runner.ended}/{expected} heavy reports ended")
        worker.stop()
        thread.join()
        return runner

    enqueue(warm)
    serve(len(warm))
    check_warm(settings, warm)
    enqueue(todo)
    calls.clear()
    _wait_for_go()
    started = time.monotonic()
    serve(reports)
    _done(started, reports, calls)
    pool.shutdown(wait=True)
    return todo, calls


def _done(started: float, reports: int, calls: Calls) -> None:
    wall = time.monotonic() - started
    out = {"reports": reports, "wall_s": round(wall, 3), "calls": calls.snapshot()}
    print("done " + json.dumps(out), flush=True)


def count_back(settings: Settings, todo: list[TaskRecord]) -> dict[str, int]:
    """Every report read back: SUCCEEDED once (attempts 1), none missing."""
    store = ReportStore(client("dynamodb", settings), settings.table_name)
    states: collections.Counter[str] = collections.Counter()
    for task in todo:  # one by one: the same under older code (BENCH_WORKER_CODE)
        record = store.get(task.report_id)
        if record is None:
            states["LOST"] += 1
        elif record.state is not State.SUCCEEDED:
            states[record.state.value] += 1
        elif record.attempts != 1:
            states["RUN_MORE_THAN_ONCE"] += 1
        else:
            states["SUCCEEDED"] += 1
    return dict(states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("light", "heavy"))
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    settings = load_settings()
    if args.mode == "light":
        todo, _ = run_light(settings, args.reports, args.batch)
    else:
        todo, _ = run_heavy(settings, args.reports)
    print("counted " + json.dumps(count_back(settings, todo)), flush=True)


if __name__ == "__main__":
    main()
