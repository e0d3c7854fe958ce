"""`python -m grpc_edge`: N edge processes on one port (SO_REUSEPORT), forked before gRPC is
imported (gRPC's threads and event engine do not survive a fork).

The parent does no serving. It forwards SIGTERM/SIGINT to the children and waits for them;
it exits 0 when every child drained and exited 0. A child that dies while the edge is not
stopping is reported and restarted (the other children keep serving); if children die
more than `_CRASH_LIMIT` times within `_CRASH_WINDOW_SECONDS` the parent stops the rest and
exits 1, so the orchestrator replaces the task instead of it flapping forever.

Nothing in this module may import grpc (checked before forking).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Final

from aws_lambda_powertools import Logger

from reportgrid.errors import SettingsError
from reportgrid.settings import Settings, load_settings

logger = Logger(service="reportgrid-edge")

_CRASH_LIMIT: Final = 5
_CRASH_WINDOW_SECONDS: Final = 60.0
_READY_TIMEOUT_SECONDS: Final = 60.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m grpc_edge", description="Run the Reportgrid gRPC edge server."
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes sharing the port (default: REPORTGRID_EDGE_WORKERS, else the CPUs "
        "this process may use)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default: REPORTGRID_EDGE_PORT, else 50051; 0 picks a free one)",
    )
    parser.add_argument(
        "--host", default=None, help="address to bind (default: REPORTGRID_EDGE_HOST, else all)"
    )
    parser.add_argument(
        "--drain-delay",
        type=float,
        default=2.0,
        help="seconds to keep answering after SIGTERM with health NOT_SERVING, before "
        "refusing new calls (default 2)",
    )
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.drain_delay < 0:
        parser.error("--drain-delay must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"grpc_edge: {err.message}", file=sys.stderr)
        return 2
    workers = args.workers or settings.edge_workers
    port = settings.edge_port if args.port is None else args.port
    host = settings.edge_host if args.host is None else args.host
    if workers == 1:
        return run_child(settings, host, port, args.drain_delay, ready_fd=None)
    if port == 0:
        port = _free_port(host)
    return Supervisor(settings, host, port, args.drain_delay, workers).run()


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])


def run_child(
    settings: Settings, host: str, port: int, drain_delay: float, *, ready_fd: int | None
) -> int:
    """Serve in this process until SIGTERM (imports grpc)."""
    import asyncio  # noqa: PLC0415 -- after the fork

    import uvloop  # noqa: PLC0415

    from grpc_edge.server import serve  # noqa: PLC0415 -- imports grpc: after the fork

    def ready(bound: int) -> None:
        if ready_fd is not None:
            os.write(ready_fd, b"R")
        else:
            logger.info(f"listening on {host.strip('[]') or host}:{bound}")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(
            serve(settings, host=host, port=port, drain_delay=drain_delay, on_ready=ready)
        )


class Supervisor:
    def __init__(
        self, settings: Settings, host: str, port: int, drain_delay: float, workers: int
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.drain_delay = drain_delay
        self.workers = workers
        self.children: dict[int, int] = {}  # pid -> slot
        self.stopping = False
        self.crashes: deque[float] = deque()
        self.failed = False
        self._ready_r, self._ready_w = os.pipe()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        for slot in range(self.workers):
            self._spawn(slot)
        self._await_ready()
        while self.children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            if pid not in self.children:
                continue
            slot = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping:
                if code != 0:
                    self.failed = True
                    logger.error("worker exited badly while draining", extra={"code": code})
                continue
            self._on_crash(slot, pid, code)
        os.close(self._ready_r)
        os.close(self._ready_w)
        return 1 if self.failed else 0

    def _on_crash(self, slot: int, pid: int, code: int) -> None:
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > _CRASH_WINDOW_SECONDS:
            self.crashes.popleft()
        logger.error("worker died", extra={"pid": pid, "code": code, "slot": slot})
        if len(self.crashes) > _CRASH_LIMIT:
            logger.error("workers keep dying; stopping the edge")
            self.failed = True
            self._forward(signal.SIGTERM, None)
            return
        self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        if "grpc" in sys.modules or "grpc._cython" in sys.modules:
            raise RuntimeError("grpc was imported before forking the edge workers")
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                os.close(self._ready_r)
                code = run_child(
                    self.settings, self.host, self.port, self.drain_delay, ready_fd=self._ready_w
                )
            except BaseException:
                logger.exception("worker failed")
            finally:
                os._exit(code)
        self.children[pid] = slot

    def _await_ready(self) -> None:
        ready = 0
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while ready < self.workers and not self.stopping and time.monotonic() < deadline:
            readable, _, _ = select.select([self._ready_r], [], [], 0.2)
            if readable:
                ready += len(os.read(self._ready_r, 64))
        if ready >= self.workers:
            shown = self.host.strip("[]") if self.host != "[::]" else self.host
            logger.info(f"listening on {shown}:{self.port} ({self.workers} workers)")
        elif not self.stopping:
            logger.error("workers did not become ready", extra={"ready": ready})

    def _forward(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
