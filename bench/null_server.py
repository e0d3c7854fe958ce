"""The baseline: a grpc.aio server with the edge's process model (N worker processes on one
port with SO_REUSEPORT, uvloop) and the edge's service and method names, whose handlers only
return a prepared reply of the edge's size. What it does per second is the limit of Python
gRPC on this machine; the edge is measured against it in the same run.

    python -m bench.null_server --port P --workers N --replies DIR --counters DIR

Per-status counters: every worker counts the status of each call it answers and, when it
stops (SIGTERM/SIGINT), writes them to <counters>/<pid>.json as
{"pid": ..., "counts": {"<Method>": {"<StatusCode name>": n}}}.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc

from bench.payloads import GET, SUBMIT
from reportgrid.resources import MAX_RECEIVE_MESSAGE_BYTES
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc as pb_grpc

REPLY_FILES = {SUBMIT: "submit.bin", GET: "get.bin"}
# grpc core cancels calls that arrive while more than `max_pending_requests` (default
# 1,000; all of them above the hard limit, default 3,000) wait for the application to pick
# them up: with 10,000 calls in flight on one process, most would end CANCELLED. The edge
# needs the same two options to pass the in-flight scenario.
MAX_PENDING_REQUESTS = 20_000
SERVER_OPTIONS = (
    ("grpc.so_reuseport", 1),
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.server.max_pending_requests", MAX_PENDING_REQUESTS),
    ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_REQUESTS),
)


class NullReportService(pb_grpc.ReportServiceServicer):
    """Returns the prepared reply; counts OK per method. Requests are still deserialized
    and replies serialized by grpc, as in the edge."""

    def __init__(self, replies_dir: Path) -> None:
        self._submit = pb.SubmitReportResponse.FromString(
            (replies_dir / REPLY_FILES[SUBMIT]).read_bytes()
        )
        self._get = pb.Report.FromString((replies_dir / REPLY_FILES[GET]).read_bytes())
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    async def SubmitReport(
        self, request: pb.SubmitReportRequest, context: Any
    ) -> pb.SubmitReportResponse:
        self.counts[SUBMIT, "OK"] += 1
        return self._submit

    async def GetReport(self, request: pb.GetReportRequest, context: Any) -> pb.Report:
        self.counts[GET, "OK"] += 1
        return self._get


def write_counters(counters_dir: Path, counts: collections.Counter[tuple[str, str]]) -> None:
    nested: dict[str, dict[str, int]] = {}
    for (method, code), n in counts.items():
        nested.setdefault(method, {})[code] = n
    path = counters_dir / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "counts": nested}))
    tmp.replace(path)  # atomic: a reader never sees half a file


async def serve_worker(port: int, replies_dir: Path, counters_dir: Path) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    # The methods it does not override answer UNIMPLEMENTED, as grpc's base class does.
    service = NullReportService(replies_dir)  # type: ignore[abstract]
    pb_grpc.add_ReportServiceServicer_to_server(service, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"null server worker {os.getpid()} listening on 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=2)
    write_counters(counters_dir, service.counts)


def run_worker(port: int, replies_dir: Path, counters_dir: Path) -> None:
    import uvloop

    uvloop.run(serve_worker(port, replies_dir, counters_dir))


def run_parent(args: argparse.Namespace) -> int:
    """Start the workers, wait; on SIGTERM stop them and wait for their counters."""
    argv = [
        sys.executable,
        "-m",
        "bench.null_server",
        "--worker",
        "--port",
        str(args.port),
        "--replies",
        str(args.replies),
        "--counters",
        str(args.counters),
    ]
    children = [subprocess.Popen(argv) for _ in range(args.workers)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.null_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="must be given: workers share it")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--replies", type=Path, required=True)
    parser.add_argument("--counters", type=Path, required=True)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.port <= 0:
        parser.error("--port must be a real port: SO_REUSEPORT workers must all bind the same one")
    args.counters.mkdir(parents=True, exist_ok=True)
    if args.worker:
        run_worker(args.port, args.replies, args.counters)
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
