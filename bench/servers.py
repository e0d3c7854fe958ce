"""The servers under load, as child processes pinned to the server CPUs: the null server
(bench.null_server) and the edge (`python -m grpc_edge`). Each knows how to say which gRPC
statuses it answered, or says why it cannot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import grpc

from bench import stats
from bench.null_server import REPLY_FILES
from bench.payloads import GET, SUBMIT, Replies
from reportgrid.local.servers import free_port

READY_MARK = "listening on"


class BenchServerError(RuntimeError):
    """A server under test did not start or stop cleanly."""


class ServerProcess:
    """A server process tree we started, pinned to `cpus`, logging to `log_path`."""

    name = "server"

    def __init__(self, *, work_dir: Path, cpus: set[int] | None, workers: int) -> None:
        self.work_dir = work_dir
        self.cpus = cpus
        self.workers = workers
        self.port = free_port()
        self.log_path = work_dir / f"{self.name}-{self.port}.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    # Subclasses give the command, the environment and how many ready lines to wait for.
    def argv(self) -> list[str]:
        raise NotImplementedError

    def environ(self) -> dict[str, str]:
        return dict(os.environ)

    def ready_lines(self) -> int:
        return self.workers

    def is_ready(self) -> bool:
        """Every worker logged that it listens (the null server's and the edge's mark)."""
        return self.log_path.read_text(errors="replace").count(READY_MARK) >= self.ready_lines()

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self, timeout: float = 60.0) -> ServerProcess:
        cpus = self.cpus

        def pin() -> None:  # in the child before exec; every worker it forks inherits it
            if cpus:
                os.sched_setaffinity(0, cpus)

        self._log = open(self.log_path, "ab")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(
            self.argv(),
            env=self.environ(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,  # noqa: PLW1509 -- only sched_setaffinity
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchServerError(
                    f"{self.name} exited with code {self.process.returncode} at start; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise BenchServerError(
            f"{self.name} did not log {self.ready_lines()} x {READY_MARK!r} in {timeout:.0f}s; "
            f"last lines:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def status_counts(self, method: str) -> dict[str, int] | None:
        """Calls of `method` by gRPC status name, once stopped; None if this server does not
        expose them (the reason is in `counters_unavailable`)."""
        return None

    counters_unavailable = "this server exposes no per-status counters"

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NullServer(ServerProcess):
    name = "null-server"

    def __init__(
        self, *, work_dir: Path, cpus: set[int] | None, workers: int, replies: Replies
    ) -> None:
        super().__init__(work_dir=work_dir, cpus=cpus, workers=workers)
        self.replies_dir = work_dir / f"replies-{self.port}"
        self.counters_dir = work_dir / f"counters-{self.port}"
        self.replies_dir.mkdir(parents=True, exist_ok=True)
        (self.replies_dir / REPLY_FILES[SUBMIT]).write_bytes(replies.submit)
        (self.replies_dir / REPLY_FILES[GET]).write_bytes(replies.get)

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.null_server",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--replies",
            str(self.replies_dir),
            "--counters",
            str(self.counters_dir),
        ]

    def status_counts(self, method: str) -> dict[str, int] | None:
        files = sorted(self.counters_dir.glob("*.json"))
        if len(files) != self.workers:
            raise BenchServerError(
                f"null server wrote {len(files)} counter files for {self.workers} workers"
            )
        return stats.merge_counts((json.loads(f.read_text())["counts"] for f in files), method)


def call_once(
    port: int, method_path: str, body: bytes, metadata: Mapping[str, str], timeout: float = 10.0
) -> tuple[str, bytes]:
    """One real gRPC call with raw bytes: (status name, reply bytes). Used to check a
    scenario works before loading it, and to learn the reply's exact size."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        # No serializers: bytes in, bytes out.
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method_path)
        try:
            reply = call(body, metadata=tuple(metadata.items()), timeout=timeout)
        except grpc.RpcError as err:
            # The sync API raises errors that are also grpc.Call; typeshed cannot say so.
            code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
            details = err.details() if hasattr(err, "details") else type(err).__name__
            return f"{code.name}: {details}", b""
        return "OK", bytes(reply)
