"""h2load: find or install it, run it against a gRPC method, and read what it measured.

h2load (Debian package nghttp2-client) is the load generator: written in C, it costs far
less CPU per request than any Python client, so the server, not the client, is what a run
measures. It speaks plain HTTP/2, so a gRPC call is a POST of a body file that holds one
length-prefixed message (see bench.grpc_frames).

What h2load cannot see: a gRPC error is an HTTP 200 whose `grpc-status` trailer is not 0,
so h2load counts it as a success. The harness checks statuses elsewhere (the server's own
counters and the DATA byte count; see bench.scenarios).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PACKAGE: Final = "nghttp2-client"
BINARY: Final = "h2load"
INSTALL_HINT: Final = (
    f"h2load is missing. Install it with `apt-get install -y {PACKAGE}` (Debian/Ubuntu, as "
    f"root) or `brew install nghttp2` (macOS), or put an h2load binary on PATH"
)


class H2LoadError(RuntimeError):
    """h2load is missing, could not be installed, or a run failed."""


def find_h2load() -> str | None:
    return shutil.which(BINARY)


def ensure_h2load(*, install: bool = True) -> str:
    """The path of h2load; installs the Debian package when missing and we are root."""
    found = find_h2load()
    if found:
        return found
    if not install:
        raise H2LoadError(INSTALL_HINT)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        why = "not running as root" if os.geteuid() != 0 else "apt-get is not available"
        raise H2LoadError(f"{INSTALL_HINT} (cannot install it myself: {why})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", PACKAGE]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise H2LoadError(
                f"{INSTALL_HINT} (`{' '.join(argv)}` failed with code {done.returncode}: "
                + " | ".join(tail)
                + ")"
            )
    found = find_h2load()
    if not found:
        raise H2LoadError(f"{INSTALL_HINT} ({PACKAGE} installed but no {BINARY} on PATH)")
    return found


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One h2load invocation."""

    url: str  # http://127.0.0.1:<port>/<package.Service>/<Method>
    body_file: Path
    requests: int  # -n
    connections: int  # -c
    streams: int  # -m: concurrent streams per connection
    headers: Sequence[tuple[str, str]] = ()
    threads: int = 1
    rate_per_connection: float | None = None  # --rps: a paced (not saturating) run
    timeout_s: float = 120.0

    def argv(self, binary: str, log_file: Path) -> list[str]:
        argv = [
            binary,
            "-n",
            str(self.requests),
            "-c",
            str(self.connections),
            "-m",
            str(self.streams),
            "-t",
            str(self.threads),
            "-d",
            str(self.body_file),
            "--log-file",
            str(log_file),
        ]
        for name, value in self.headers:
            argv += ["--header", f"{name}: {value}"]
        if self.rate_per_connection is not None:
            argv += ["--rps", f"{self.rate_per_connection:.3f}"]
        argv.append(self.url)
        return argv


@dataclass(frozen=True, slots=True)
class Summary:
    """h2load's own end-of-run figures (from its stdout)."""

    requests_total: int
    started: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    data_bytes: int  # DATA frame payload received: gRPC messages only, never trailers
    finished_s: float
    req_per_s: float


_REQUESTS_RE: Final = re.compile(
    r"requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<ok>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored, "
    r"(?P<timeout>\d+) timeout"
)
_CODES_RE: Final = re.compile(
    r"status codes: (?P<s2>\d+) 2xx, (?P<s3>\d+) 3xx, (?P<s4>\d+) 4xx, (?P<s5>\d+) 5xx"
)
_TRAFFIC_RE: Final = re.compile(r"traffic: .*?\((\d+)\) data")
_FINISHED_RE: Final = re.compile(
    r"finished in (?P<t>[\d.]+)(?P<unit>us|ms|s), (?P<rps>[\d.]+) req/s"
)
_UNIT_S: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_summary(stdout: str) -> Summary:
    """Read the figures h2load prints at the end of a run; H2LoadError if any is missing."""
    found = {
        "requests": _REQUESTS_RE.search(stdout),
        "status codes": _CODES_RE.search(stdout),
        "traffic": _TRAFFIC_RE.search(stdout),
        "finished": _FINISHED_RE.search(stdout),
    }
    missing = [name for name, match in found.items() if match is None]
    if missing:
        raise H2LoadError(
            f"h2load output has no {', '.join(missing)} line; output was:\n{stdout[-2000:]}"
        )
    req, codes, traffic, fin = (found[k] for k in found)
    assert req is not None  # for the type checker: all four were checked above
    assert codes is not None
    assert traffic is not None
    assert fin is not None
    return Summary(
        requests_total=int(req["total"]),
        started=int(req["started"]),
        done=int(req["done"]),
        succeeded=int(req["ok"]),
        failed=int(req["failed"]),
        errored=int(req["errored"]),
        timeout=int(req["timeout"]),
        status_2xx=int(codes["s2"]),
        status_3xx=int(codes["s3"]),
        status_4xx=int(codes["s4"]),
        status_5xx=int(codes["s5"]),
        data_bytes=int(traffic.group(1)),
        finished_s=float(fin["t"]) * _UNIT_S[fin["unit"]],
        req_per_s=float(fin["rps"]),
    )


@dataclass(frozen=True, slots=True)
class LogEntry:
    start_us: int
    http_status: int  # -1 when the stream failed before a response
    duration_us: int


def parse_log(text: str) -> list[LogEntry]:
    """h2load --log-file: one tab-separated line per request (start time in microseconds,
    HTTP status, microseconds to the end of the response). Extra columns are ignored, as
    h2load's manual reserves the right to add them."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        try:
            entries.append(LogEntry(int(cols[0]), int(cols[1]), int(cols[2])))
        except (IndexError, ValueError):
            message = f"h2load log line {number} is not 3 integer columns: {line!r}"
            raise H2LoadError(message) from None
    return entries


@dataclass(frozen=True, slots=True)
class Result:
    summary: Summary
    log: list[LogEntry] = field(repr=False)
    argv: list[str]
    stdout: str = field(repr=False)


def run(
    spec: LoadSpec, *, binary: str, work_dir: Path, cpus: set[int] | None = None, tag: str = "run"
) -> Result:
    """Run h2load to completion (pinned to `cpus` when given) and parse its figures."""
    log_file = work_dir / f"h2load-{tag}.log"
    log_file.unlink(missing_ok=True)
    argv = spec.argv(binary, log_file)

    def pin() -> None:  # runs in the child between fork and exec
        if cpus:
            os.sched_setaffinity(0, cpus)

    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=spec.timeout_s,
            check=False,
            preexec_fn=pin,
        )
    except subprocess.TimeoutExpired:
        raise H2LoadError(f"h2load did not finish in {spec.timeout_s:.0f}s: {argv}") from None
    if done.returncode != 0:
        raise H2LoadError(f"h2load exited with code {done.returncode}: {done.stderr[-1000:]}")
    summary = parse_summary(done.stdout)
    log = parse_log(log_file.read_text()) if log_file.exists() else []
    return Result(summary=summary, log=log, argv=argv, stdout=done.stdout)
