"""A Kinesis endpoint that accepts every PutRecords at once, so that a Submit scenario
measures the edge alone rather than the edge plus the local Kinesis emulator.

Against moto, every PutRecords is served by a Python server on the load CPU, one call at a
time, and answered with `Connection: close`, so each batch also pays a new TCP connection.
Real Kinesis does neither. This server answers PutRecords from memory in microseconds
(HTTP/1.1 keep-alive, the JSON the Kinesis API returns, one SequenceNumber and ShardId per
record) and forwards every other request (DynamoDB, S3, DescribeStreamSummary ...) to the
moto server unchanged, so the edge runs with its real settings and one endpoint URL. The one
exception is a keyed Submit's idempotency claim (a DynamoDB PutItem of an `idem#` item,
grpc_edge/idempotency.py): answered at once as written (every bench key is new), as the
PutRecords are, so the keyed rows measure the edge's claim, not moto's.

    python -m bench.fake_kinesis --port P --upstream http://127.0.0.1:MOTO [--close]

`--close` answers like moto (`Connection: close`): the difference between the two modes is
what moto's closed connections cost the edge.

GET /_bench/records returns, and forgets, the Data (base64) of every record accepted so
far, so the bench can count acknowledged Submits back as it does from the moto stream.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Final

import aiohttp

from reportgrid import resources

PUT_RECORDS: Final = b"kinesis_20131202.putrecords"
PUT_ITEM: Final = b"dynamodb_20120810.putitem"
_SHARD: Final = "shardId-000000000000"
_HEADER_END: Final = b"\r\n\r\n"
RECORDS_PATH: Final = "/_bench/records"


class State:
    """What every connection shares: accepted records and the next sequence number."""

    def __init__(self, upstream: str, *, close: bool) -> None:
        self.upstream = upstream.rstrip("/")
        self.close = close
        self.data: list[str] = []
        self.sequence = 49_000_000_000_000_000_000_000_000_000_000_000_000_000_000
        self.session: aiohttp.ClientSession | None = None

    def put_records(self, body: bytes) -> bytes:
        records = json.loads(body)["Records"]
        first = self.sequence
        self.sequence += len(records)
        self.data.extend(r["Data"] for r in records)
        # The shape of a real PutRecords answer (Kinesis API reference: FailedRecordCount,
        # Records[].SequenceNumber / ShardId), built as text: this is the hot path.
        items = ",".join(
            f'{{"SequenceNumber":"{first + i}","ShardId":"{_SHARD}"}}' for i in range(len(records))
        )
        return f'{{"FailedRecordCount":0,"Records":[{items}]}}'.encode()


def _is_claim(body: bytes) -> bool:
    """A PutItem of an idempotency claim (its key's prefix: reportgrid.resources)."""
    try:
        key = json.loads(body)["Item"][resources.PARTITION_KEY]["S"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(key, str) and key.startswith(resources.IDEMPOTENCY_PREFIX)


class Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 requests with Content-Length bodies (what
    aiobotocore sends), answered in order."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pending: asyncio.Task[None] | None = None  # a forwarded request being answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.pending is None:
            self._process()

    def _process(self) -> None:
        while self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(_HEADER_END)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, path, _ = head[0].split(" ", 2)
            target = headers.get("x-amz-target", "").lower().encode()
            if target == PUT_RECORDS:
                self._answer(200, self.state.put_records(body), "application/x-amz-json-1.1")
            elif target == PUT_ITEM and _is_claim(body):
                self._answer(200, b"{}", "application/x-amz-json-1.0")
            elif method == "GET" and path == RECORDS_PATH:
                data, self.state.data = self.state.data, []
                self._answer(200, json.dumps({"data": data}).encode(), "application/json")
            else:
                self.pending = asyncio.get_running_loop().create_task(
                    self._forward(method, path, headers, body)
                )
                return

    def _answer(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        assert self.transport is not None
        close = self.state.close
        lines = [
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "x-amzn-RequestId: 00000000-0000-0000-0000-000000000000",
            f"Connection: {'close' if close else 'keep-alive'}",
            *(f"{k}: {v}" for k, v in (extra or {}).items()),
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self.transport.close()

    async def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        """Anything but PutRecords goes to moto, answered on this connection in order."""
        state = self.state
        if state.session is None:
            state.session = aiohttp.ClientSession(auto_decompress=False)
        sent = {k: v for k, v in headers.items() if k not in {"host", "content-length"}}
        try:
            async with state.session.request(
                method, state.upstream + path, headers=sent, data=body, allow_redirects=False
            ) as response:
                payload = await response.read()
                keep = {
                    k: v
                    for k, v in response.headers.items()
                    if k.lower().startswith(("x-amz", "etag", "last-modified", "content-range"))
                }
                self._answer(
                    response.status,
                    payload,
                    response.headers.get("Content-Type", "application/octet-stream"),
                    keep,
                )
        except (aiohttp.ClientError, OSError) as err:
            self._answer(502, str(err).encode(), "text/plain")
        finally:
            self.pending = None
        self._process()


async def serve(port: int, upstream: str, *, close: bool) -> None:
    state = State(upstream, close=close)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1", port)
    print(f"fake kinesis listening on 127.0.0.1:{port} (upstream {upstream})", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if state.session is not None:
        await state.session.close()


class FakeKinesisProcess:
    """The server as a child process of the bench, pinned with the load generator."""

    def __init__(self, upstream: str, log_path: Path, *, close: bool, port: int) -> None:
        self.upstream = upstream
        self.log_path = log_path
        self.close = close
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> FakeKinesisProcess:
        argv = [sys.executable, "-m", "bench.fake_kinesis", "--port", str(self.port)]
        argv += ["--upstream", self.upstream, *(["--close"] if self.close else [])]
        # A fresh log: its "listening on" line is how start() knows the server is up.
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "listening on" not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fake kinesis did not start; see {self.log_path}")
            time.sleep(0.05)
        return self

    def take_records(self) -> list[bytes]:
        """The Data of every record accepted since the last call."""
        with urllib.request.urlopen(self.endpoint_url + RECORDS_PATH, timeout=30) as reply:
            return [base64.b64decode(d) for d in json.loads(reply.read())["data"]]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_kinesis", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the moto server's URL")
    parser.add_argument("--close", action="store_true", help="answer Connection: close")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port, args.upstream, close=args.close))
    return 0


if __name__ == "__main__":
    sys.exit(main())
