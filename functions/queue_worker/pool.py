"""CPU-bound generation in a process pool, so a report never holds the GIL of the process
that renews leases and talks to SQS."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from reportgrid.engine.registry import Generator
from reportgrid.engine.request import GenerateRequest, GenerateResult


class GeneratorPool:
    def __init__(self, workers: int) -> None:
        # forkserver: children do not inherit this process's threads or sockets.
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("forkserver")
        )

    def __call__(self, generator: Generator, request: GenerateRequest) -> GenerateResult:
        result: GenerateResult = self._pool.submit(generator, request).result()
        return result

    def shutdown(self, *, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
