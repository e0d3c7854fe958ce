"""CPU-bound generation in a process pool, so a report never holds the GIL of the process
that renews leases and talks to SQS.

A child that dies (SIGKILL, the kernel's OOM killer, a crash in native code) or a result
that cannot be unpickled makes CPython mark the whole executor broken: every pending and
later submit raises BrokenProcessPool. The pool then replaces its executor once, so only
the reports in flight at that moment see the error (the runner treats it as transient and
the queue redelivers them); later reports run on the new executor.

Each child runs one report at a time, so it keeps one DuckDB database for its life
(reportgrid/engine/session.py: a new database costs about 18 ms of CPU, a cursor 0.3 ms).
That database may use one directory, the child's own: each report's files are moved from
the work_dir the parent gave it into a fresh directory there, and removed after the run, so
a report never sees the files of one running at the same time in another child.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import shutil
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from reportgrid.engine.registry import Generator
from reportgrid.engine.request import GenerateRequest, GenerateResult, InputData

log = logging.getLogger(__name__)


class UnpicklableError(RuntimeError):
    """Stands in for an exception raised in a child that would not survive the trip to
    the parent (it would break the pool); it names the original type only."""


def run_guarded(generator: Generator, request: GenerateRequest) -> GenerateResult:
    """Runs in the child: the generator, with any exception made safe to send back."""
    try:
        result: GenerateResult = generator(request)
    except Exception as err:
        try:
            pickle.loads(pickle.dumps(err))  # noqa: S301 -- our own bytes, just made
        except Exception:
            raise UnpicklableError(type(err).__qualname__) from None
        raise
    return result


_child_roots: dict[str, str] = {}  # the parent's scratch root -> this child's own


def _child_root(parent_root: str) -> str:
    """This child's directory, inside the parent's scratch root (so the parent removes it
    at exit even if this child is killed), made on first use."""
    root = _child_roots.get(parent_root)
    if root is None:
        root = tempfile.mkdtemp(prefix=f"pool-{os.getpid()}-", dir=parent_root)
        _child_roots[parent_root] = root
    return root


def run_in_child(generator: Generator, request: GenerateRequest) -> GenerateResult:
    """Runs in the child: the report in a directory of the child's own, with the child's
    shared database (its limits are the same for every report of this pool; the deadline
    and the cancel flag stay the report's own)."""
    run_dir = tempfile.mkdtemp(dir=_child_root(os.path.dirname(request.work_dir)))
    try:
        data = request.input
        if data is not None:
            moved = os.path.join(run_dir, os.path.basename(data.path))
            shutil.move(data.path, moved)
            data = InputData(data.format, moved)
        own = replace(request, work_dir=run_dir, input=data, scratch_root=os.path.dirname(run_dir))
        return run_guarded(generator, own)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


class GeneratorPool:
    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self.replaced = 0  # how many times a broken executor was replaced (tests, logs)

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: children do not inherit this process's threads or sockets.
        return ProcessPoolExecutor(
            max_workers=self._workers, mp_context=multiprocessing.get_context("forkserver")
        )

    def __call__(self, generator: Generator, request: GenerateRequest) -> GenerateResult:
        with self._lock:
            pool = self._pool
        try:
            result: GenerateResult = pool.submit(run_in_child, generator, request).result()
        except BrokenProcessPool:
            self._replace(pool)
            raise
        return result

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Swap in a new executor unless another caller already replaced this one."""
        with self._lock:
            if self._pool is not broken:
                return
            log.error("the generator pool broke (a child died); starting a new one")
            self._pool = self._new_pool()
            self.replaced += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, *, wait: bool) -> None:
        with self._lock:
            pool = self._pool
        pool.shutdown(wait=wait, cancel_futures=True)
