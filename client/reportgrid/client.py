"""The Python SDK: `ReportClient` (blocking) and `AsyncReportClient` (asyncio).

    from reportgrid.client import ReportClient

    with ReportClient("127.0.0.1:50051", api_key="rg_...") as client:
        accepted = client.submit("summary", {"group_by": ["region"]}, input_file="sales.csv")
        report = client.wait(accepted.report_id)
        client.download(report.report_id, "summary.csv")

Every call has a deadline (`timeout`, 30 s unless given). UNAVAILABLE is retried by the
channel's gRPC service config (safe: the server acknowledges nothing it did not do, and
`submit` always sends an idempotency key). Several endpoints may be given: on UNAVAILABLE,
or when an endpoint's health check says NOT_SERVING, the client moves to the next one.
Failures raise `reportgrid.errors` classes (NotFound, InvalidArgument, ...), never a bare
grpc.RpcError.
"""

# ruff: noqa: ASYNC109 -- `timeout` here is the gRPC deadline sent with each call

from __future__ import annotations

import builtins
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Generic, Self, TypeVar

import grpc
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from grpc import aio
from grpc_health.v1 import health_pb2

from reportgrid import errors, wire
from reportgrid.status import from_rpc_error
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc as pb_grpc

SERVICE_NAME: Final = "reportgrid.v1.ReportService"
HEALTH_CHECK_METHOD: Final = "/grpc.health.v1.Health/Check"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_DOWNLOAD_TIMEOUT: Final = 600.0
TERMINAL_STATES: Final = frozenset(
    {
        pb.REPORT_STATE_SUCCEEDED,
        pb.REPORT_STATE_FAILED,
        pb.REPORT_STATE_CANCELLED,
        pb.REPORT_STATE_EXPIRED,
    }
)

# Retried by the channel itself. Every method is safe to retry on UNAVAILABLE: the server
# acknowledges nothing it has not done, and submits carry an idempotency key.
SERVICE_CONFIG: Final = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": SERVICE_NAME}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

_FORMATS_BY_SUFFIX: Final = {
    ".csv": pb.DATA_FORMAT_CSV,
    ".json": pb.DATA_FORMAT_JSON,
    ".jsonl": pb.DATA_FORMAT_JSON,
    ".ndjson": pb.DATA_FORMAT_JSON,
    ".parquet": pb.DATA_FORMAT_PARQUET,
}
_DATA_FORMATS: Final = {"csv": pb.DATA_FORMAT_CSV, "json": pb.DATA_FORMAT_JSON}
_DATA_FORMATS_S3: Final = {**_DATA_FORMATS, "parquet": pb.DATA_FORMAT_PARQUET}
OUTPUT_FORMATS: Final = {
    "csv": pb.OUTPUT_FORMAT_CSV,
    "json": pb.OUTPUT_FORMAT_JSON,
    "parquet": pb.OUTPUT_FORMAT_PARQUET,
    "markdown": pb.OUTPUT_FORMAT_MARKDOWN,
}
PRIORITIES: Final = {
    "low": pb.PRIORITY_LOW,
    "normal": pb.PRIORITY_NORMAL,
    "high": pb.PRIORITY_HIGH,
}

_T = TypeVar("_T")
_Channel = TypeVar("_Channel", grpc.Channel, aio.Channel)


class ChecksumMismatch(errors.ReportgridError):
    """Downloaded bytes do not match the size or SHA-256 the server reported; nothing was
    written to the destination file."""


def watched_report(response: pb.WatchReportResponse) -> pb.Report | None:
    """The report a WatchReport message carries; None for a heartbeat (or an event this SDK
    does not know yet), which only says the stream is alive."""
    return response.report if response.WhichOneof("event") == "report" else None


def state_name(state: pb.ReportState.ValueType) -> str:
    """ "SUCCEEDED" for REPORT_STATE_SUCCEEDED."""
    return pb.ReportState.Name(state).removeprefix("REPORT_STATE_")


def data_format_for(path: str | os.PathLike[str]) -> pb.DataFormat.ValueType:
    """The input format a file name implies (.csv, .json, .jsonl, .ndjson, .parquet)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS_BY_SUFFIX:
        known = ", ".join(sorted(_FORMATS_BY_SUFFIX))
        raise errors.InvalidArgument.field(
            "input.format", f"cannot tell the format of {str(path)!r}; use one of {known}"
        )
    return _FORMATS_BY_SUFFIX[suffix]


def parse_data_format(name: str) -> pb.DataFormat.ValueType:
    """ "csv" | "json" | "parquet" to the DataFormat enum."""
    try:
        return _DATA_FORMATS_S3[name.lower()]
    except KeyError:
        known = ", ".join(_DATA_FORMATS_S3)
        raise errors.InvalidArgument.field(
            "input.format", f"unknown format {name!r}; use one of {known}"
        ) from None


@dataclass(frozen=True, slots=True)
class ReportInputSpec:
    """Where a report's data comes from: inline bytes or an S3 URI, with its format."""

    format: pb.DataFormat.ValueType
    data: bytes | None = None
    s3_uri: str | None = None

    def to_proto(self) -> pb.ReportInput:
        if self.s3_uri is not None:
            return pb.ReportInput(format=self.format, s3_uri=self.s3_uri)
        return pb.ReportInput(format=self.format, inline_data=self.data or b"")


def build_submit_request(
    kind: str,
    params: Mapping[str, Any] | None = None,
    *,
    input_file: str | os.PathLike[str] | None = None,
    input_data: bytes | None = None,
    input_s3_uri: str | None = None,
    input_format: pb.DataFormat.ValueType | str | None = None,
    output_format: pb.OutputFormat.ValueType | str | None = None,
    priority: pb.Priority.ValueType | str | None = None,
    idempotency_key: str | None = None,
    ttl: timedelta | float | None = None,
    durability: pb.Durability.ValueType | None = None,
) -> pb.SubmitReportRequest:
    """The SubmitReportRequest for the arguments of `submit` (shared by both clients)."""
    sources = [s for s in (input_file, input_data, input_s3_uri) if s is not None]
    if len(sources) > 1:
        raise errors.InvalidArgument.field(
            "input", "give one of input_file, input_data or input_s3_uri"
        )
    request = pb.SubmitReportRequest(
        kind=kind,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
    )
    if params:
        request.params.CopyFrom(_struct(params))
    fmt = parse_data_format(input_format) if isinstance(input_format, str) else input_format
    if input_file is not None:
        data = Path(input_file).read_bytes()
        request.input.CopyFrom(
            ReportInputSpec(fmt or data_format_for(input_file), data=data).to_proto()
        )
    elif input_data is not None or input_s3_uri is not None:
        if fmt is None:
            raise errors.InvalidArgument.field(
                "input.format", "give input_format for inline data or an S3 URI"
            )
        request.input.CopyFrom(
            ReportInputSpec(fmt, data=input_data, s3_uri=input_s3_uri).to_proto()
        )
    if output_format is not None:
        request.output_format = (
            _lookup(OUTPUT_FORMATS, output_format, "output_format")
            if isinstance(output_format, str)
            else output_format
        )
    if priority is not None:
        request.priority = (
            _lookup(PRIORITIES, priority, "priority") if isinstance(priority, str) else priority
        )
    if ttl is not None:
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(seconds)))
    if durability is not None:
        request.durability = durability
    return request


def build_list_request(
    *,
    page_size: int = 0,
    states: Sequence[pb.ReportState.ValueType] = (),
    kinds: Sequence[str] = (),
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> pb.ListReportsRequest:
    request = pb.ListReportsRequest(page_size=page_size, states=states, kinds=kinds)
    if created_after is not None:
        request.created_after.CopyFrom(_timestamp(created_after))
    if created_before is not None:
        request.created_before.CopyFrom(_timestamp(created_before))
    return request


def _lookup(table: Mapping[str, _T], name: str, field: str) -> _T:
    try:
        return table[name.lower()]
    except KeyError:
        known = ", ".join(table)
        raise errors.InvalidArgument.field(field, f"unknown {name!r}; use one of {known}") from None


def _struct(params: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(params))
    return struct


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class _Sink:
    """Where download bytes go: a temporary file beside the destination (renamed into place
    only after the checksum matches) or a caller's binary stream."""

    def __init__(self, destination: str | os.PathLike[str] | IO[bytes]) -> None:
        self._path: Path | None = None
        self._tmp: Path | None = None
        if isinstance(destination, str | os.PathLike):
            self._path = Path(destination)
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=self._path.parent)
            self._tmp = Path(tmp)
            self.stream: IO[bytes] = os.fdopen(fd, "wb")
        else:
            self.stream = destination
        self._digest = hashlib.sha256()
        self.size = 0
        self.metadata: pb.ResultMetadata | None = None

    def add(self, chunk: pb.DownloadReportChunk) -> None:
        if chunk.HasField("metadata"):
            self.metadata = chunk.metadata
        if chunk.offset != self.size:
            raise ChecksumMismatch(
                f"download: expected offset {self.size}, got {chunk.offset}; retry the download"
            )
        self._digest.update(chunk.data)
        self.stream.write(chunk.data)
        self.size += len(chunk.data)

    def finish(self, report_id: str) -> pb.ResultMetadata:
        meta = self.metadata
        try:
            if meta is None:
                raise ChecksumMismatch(f"download of {report_id}: the server sent no metadata")
            if self.size != meta.size_bytes or self._digest.hexdigest() != meta.sha256:
                raise ChecksumMismatch(
                    f"download of {report_id}: got {self.size} bytes with sha256 "
                    f"{self._digest.hexdigest()[:12]}..., expected {meta.size_bytes} bytes "
                    f"with {meta.sha256[:12]}...; retry the download"
                )
        except BaseException:
            self.abort()
            raise
        if self._path is not None and self._tmp is not None:
            self.stream.close()
            self._tmp.replace(self._path)
        return meta

    def abort(self) -> None:
        if self._tmp is not None:
            self.stream.close()
            self._tmp.unlink(missing_ok=True)


# Keepalive: a ping every CLIENT_KEEPALIVE_SECONDS finds a dead connection (a lost region,
# a dropped NAT entry) within that plus the timeout, even while a call waits. The edge
# accepts a ping without data at most every EDGE_MIN_CLIENT_PING_INTERVAL_MS and answers
# faster ones with GOAWAY too_many_pings (grpc doc/keepalive.md), so the interval stays
# above it. Pings keep no stream open through the ALB (it does not count PINGs as
# activity): WatchReport's heartbeats do that.
KEEPALIVE_OPTIONS: Final = (
    ("grpc.keepalive_time_ms", wire.CLIENT_KEEPALIVE_SECONDS * 1000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # a quiet watch keeps being checked
)


def _channel_options(
    extra: Sequence[tuple[str, Any]],
) -> list[tuple[str, Any]]:
    """The SDK's channel options; an option in `extra` replaces the SDK's of that name."""
    options = dict(
        [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", SERVICE_CONFIG),
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.max_send_message_length", wire.MAX_RECEIVE_MESSAGE_BYTES),
            *KEEPALIVE_OPTIONS,
        ]
    )
    options.update(extra)
    return list(options.items())


@dataclass(frozen=True, slots=True)
class _Connection:
    """How to reach the service: endpoints in failover order, TLS and credentials."""

    endpoints: tuple[str, ...]
    api_key: str | None
    tls: bool
    root_certificates: bytes | None
    options: tuple[tuple[str, Any], ...]

    @classmethod
    def of(
        cls,
        endpoints: str | Sequence[str],
        *,
        api_key: str | None,
        tls: bool,
        root_certificates: bytes | None,
        options: Sequence[tuple[str, Any]],
    ) -> _Connection:
        listed = (
            [e.strip() for e in endpoints.split(",")]
            if isinstance(endpoints, str)
            else [e.strip() for e in endpoints]
        )
        listed = [e for e in listed if e]
        if not listed:
            raise errors.InvalidArgument.field("endpoint", "give at least one host:port")
        return cls(
            tuple(listed),
            api_key,
            tls or root_certificates is not None,
            root_certificates,
            tuple(_channel_options(options)),
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)


class _ClientBase(Generic[_Channel]):
    """What both clients share: the connection, the endpoint in use, channels, call options.

    Args:
        endpoints: "host:port", a comma-separated list, or a sequence; tried in order.
        api_key: sent as `authorization: Bearer <key>` on every call.
        tls: use TLS (implied by `root_certificates`); system roots unless given.
        root_certificates: PEM bytes of the CA to trust.
        timeout: the default deadline of each call, in seconds.
        options: extra gRPC channel options.
    """

    # grpc or grpc.aio: the module whose channels this client uses.
    _grpc: Any = grpc

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        api_key: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._conn = _Connection.of(
            endpoints,
            api_key=api_key,
            tls=tls,
            root_certificates=root_certificates,
            options=options,
        )
        self.timeout = timeout
        self._current = 0
        self._checked = False
        self._channels: dict[str, _Channel] = {}

    @property
    def endpoint(self) -> str:
        """The endpoint calls currently go to."""
        return self._conn.endpoints[self._current]

    def _channel(self, endpoint: str) -> _Channel:
        if endpoint not in self._channels:
            opts = list(self._conn.options)
            self._channels[endpoint] = (
                self._grpc.secure_channel(endpoint, self._conn.credentials(), options=opts)
                if self._conn.tls
                else self._grpc.insecure_channel(endpoint, options=opts)
            )
        return self._channels[endpoint]

    def _candidates(self, *, advance: bool) -> list[int]:
        """Endpoint indexes to try, in failover order from the current (or the next) one."""
        count = len(self._conn.endpoints)
        start = self._current + (1 if advance else 0)
        return [(start + step) % count for step in range(count)]

    def _kw(self, timeout: float | None) -> dict[str, Any]:
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "metadata": self._conn.metadata,
        }


class ReportClient(_ClientBase[grpc.Channel]):
    """A blocking client of ReportService; see `_ClientBase` for the arguments."""

    def _serving(self, endpoint: str) -> bool:
        """False only when the endpoint is down or says NOT_SERVING; a server without the
        health service counts as serving."""
        check = self._channel(endpoint).unary_unary(
            HEALTH_CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        except grpc.RpcError as err:
            return err.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def _select(self, *, advance: bool) -> None:
        """Move to the first serving endpoint from the current one (or the next one)."""
        candidates = self._candidates(advance=advance)
        if len(candidates) > 1:
            serving = (i for i in candidates if self._serving(self._conn.endpoints[i]))
            self._current = next(serving, candidates[0])
        self._checked = True

    def _invoke(self, call: Callable[[pb_grpc.ReportServiceStub], _T]) -> _T:
        if not self._checked:
            self._select(advance=False)
        attempts = len(self._conn.endpoints)
        for attempt in range(attempts):
            stub = pb_grpc.ReportServiceStub(self._channel(self.endpoint))
            try:
                return call(stub)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    self._select(advance=True)
                    continue
                raise from_rpc_error(err) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- the API ---------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        input_file: str | os.PathLike[str] | None = None,
        input_data: bytes | None = None,
        input_s3_uri: str | None = None,
        input_format: pb.DataFormat.ValueType | str | None = None,
        output_format: pb.OutputFormat.ValueType | str | None = None,
        priority: pb.Priority.ValueType | str | None = None,
        idempotency_key: str | None = None,
        ttl: timedelta | float | None = None,
        durability: pb.Durability.ValueType | None = None,
        timeout: float | None = None,
    ) -> pb.SubmitReportResponse:
        """Submit a report; returns its id at once. An idempotency key is generated unless
        given, so retries (the channel's and yours with the same key) never run it twice.
        The input is a file (format from its extension unless `input_format`), bytes or an
        "s3://bucket/key" URI (both need `input_format`)."""
        request = build_submit_request(
            kind,
            params,
            input_file=input_file,
            input_data=input_data,
            input_s3_uri=input_s3_uri,
            input_format=input_format,
            output_format=output_format,
            priority=priority,
            idempotency_key=idempotency_key,
            ttl=ttl,
            durability=durability,
        )
        return self._invoke(lambda s: s.SubmitReport(request, **self._kw(timeout)))

    def get(
        self, report_id: str, *, include_content: bool = False, timeout: float | None = None
    ) -> pb.Report:
        """The report's current state (and result metadata once SUCCEEDED)."""
        request = pb.GetReportRequest(report_id=report_id, include_content=include_content)
        return self._invoke(lambda s: s.GetReport(request, **self._kw(timeout)))

    def wait(
        self,
        report_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        on_update: Callable[[pb.Report], None] | None = None,
    ) -> pb.Report:
        """Block until the report is terminal and return it. Follows WatchReport (skipping
        its heartbeats); when a stream ends UNAVAILABLE (its longest duration reached, a
        server draining, a lost connection) or early, reads GetReport once and watches
        again after `poll_interval` s. `on_update` sees every state received. Raises
        DeadlineExceeded after `timeout` s (default: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        while True:
            try:
                for response in self._invoke(
                    lambda s: s.WatchReport(
                        pb.WatchReportRequest(report_id=report_id),
                        timeout=remaining(),
                        metadata=self._conn.metadata,
                    )
                ):
                    report = watched_report(response)
                    if report is None:
                        continue
                    if on_update is not None:
                        on_update(report)
                    if report.state in TERMINAL_STATES:
                        return report
            except grpc.RpcError as err:
                mapped = from_rpc_error(err)
                if not isinstance(mapped, errors.Unavailable):
                    raise mapped from None
            except errors.Unavailable:
                pass
            left = remaining()
            if left is not None and left <= 0:
                raise errors.DeadlineExceeded(
                    f"report {report_id} was not finished after {timeout:g}s"
                )
            report = self.get(report_id, timeout=min(self.timeout, left or self.timeout))
            if on_update is not None:
                on_update(report)
            if report.state in TERMINAL_STATES:
                return report
            time.sleep(poll_interval if left is None else min(poll_interval, left))

    def list_pages(
        self,
        *,
        page_size: int = 0,
        states: Sequence[pb.ReportState.ValueType] = (),
        kinds: Sequence[str] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        timeout: float | None = None,
    ) -> Iterator[pb.ListReportsResponse]:
        """The caller's reports, newest first, one page at a time."""
        request = build_list_request(
            page_size=page_size,
            states=states,
            kinds=kinds,
            created_after=created_after,
            created_before=created_before,
        )
        while True:
            page = self._invoke(lambda s: s.ListReports(request, **self._kw(timeout)))
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def list(
        self,
        *,
        page_size: int = 0,
        states: Sequence[pb.ReportState.ValueType] = (),
        kinds: Sequence[str] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        timeout: float | None = None,
    ) -> Iterator[pb.Report]:
        """Every matching report, newest first; pages are fetched as the iterator advances."""
        for page in self.list_pages(
            page_size=page_size,
            states=states,
            kinds=kinds,
            created_after=created_after,
            created_before=created_before,
            timeout=timeout,
        ):
            yield from page.reports

    def cancel(self, report_id: str, *, timeout: float | None = None) -> pb.Report:
        """Request cancellation (best effort); returns the report as it now is."""
        request = pb.CancelReportRequest(report_id=report_id)
        return self._invoke(lambda s: s.CancelReport(request, **self._kw(timeout)))

    def delete(
        self, report_id: str, *, allow_missing: bool = False, timeout: float | None = None
    ) -> pb.DeleteReportResponse:
        """Delete a report and its result."""
        request = pb.DeleteReportRequest(report_id=report_id, allow_missing=allow_missing)
        return self._invoke(lambda s: s.DeleteReport(request, **self._kw(timeout)))

    def download(
        self,
        report_id: str,
        destination: str | os.PathLike[str] | IO[bytes],
        *,
        timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    ) -> pb.ResultMetadata:
        """Stream the result to a file path (written atomically, only if the SHA-256
        matches) or a binary stream; returns the result metadata. Raises ChecksumMismatch
        when the bytes do not match the metadata."""
        request = pb.DownloadReportRequest(report_id=report_id)

        def run(stub: pb_grpc.ReportServiceStub) -> pb.ResultMetadata:
            sink = _Sink(destination)
            try:
                for chunk in stub.DownloadReport(request, **self._kw(timeout)):
                    sink.add(chunk)
            except BaseException:
                sink.abort()
                raise
            return sink.finish(report_id)

        return self._invoke(run)

    def kinds(self, *, timeout: float | None = None) -> builtins.list[pb.ReportKind]:
        """The report kinds on offer, with their parameter schemas."""
        request = pb.ListReportKindsRequest()
        reply = self._invoke(lambda s: s.ListReportKinds(request, **self._kw(timeout)))
        return list(reply.kinds)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncReportClient(_ClientBase[aio.Channel]):
    """The asyncio twin of `ReportClient`: the same arguments, and every method a
    coroutine (`list`/`list_pages` are async iterators)."""

    _grpc = aio

    async def _serving(self, endpoint: str) -> bool:
        check = self._channel(endpoint).unary_unary(
            HEALTH_CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        except grpc.RpcError as err:
            return err.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _select(self, *, advance: bool) -> None:
        candidates = self._candidates(advance=advance)
        self._current = candidates[0]
        if len(candidates) > 1:
            for index in candidates:
                if await self._serving(self._conn.endpoints[index]):
                    self._current = index
                    break
        self._checked = True

    async def _invoke(self, call: Callable[[pb_grpc.ReportServiceAsyncStub], Awaitable[_T]]) -> _T:
        if not self._checked:
            await self._select(advance=False)
        attempts = len(self._conn.endpoints)
        for attempt in range(attempts):
            stub = pb_grpc.ReportServiceStub(self._channel(self.endpoint))
            try:
                return await call(stub)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    await self._select(advance=True)
                    continue
                raise from_rpc_error(err) from None
        raise AssertionError("unreachable")

    async def submit(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        input_file: str | os.PathLike[str] | None = None,
        input_data: bytes | None = None,
        input_s3_uri: str | None = None,
        input_format: pb.DataFormat.ValueType | str | None = None,
        output_format: pb.OutputFormat.ValueType | str | None = None,
        priority: pb.Priority.ValueType | str | None = None,
        idempotency_key: str | None = None,
        ttl: timedelta | float | None = None,
        durability: pb.Durability.ValueType | None = None,
        timeout: float | None = None,
    ) -> pb.SubmitReportResponse:
        """See `ReportClient.submit`."""
        request = build_submit_request(
            kind,
            params,
            input_file=input_file,
            input_data=input_data,
            input_s3_uri=input_s3_uri,
            input_format=input_format,
            output_format=output_format,
            priority=priority,
            idempotency_key=idempotency_key,
            ttl=ttl,
            durability=durability,
        )

        async def run(s: pb_grpc.ReportServiceAsyncStub) -> pb.SubmitReportResponse:
            return await s.SubmitReport(request, **self._kw(timeout))

        return await self._invoke(run)

    async def get(
        self, report_id: str, *, include_content: bool = False, timeout: float | None = None
    ) -> pb.Report:
        """See `ReportClient.get`."""
        request = pb.GetReportRequest(report_id=report_id, include_content=include_content)

        async def run(s: pb_grpc.ReportServiceAsyncStub) -> pb.Report:
            return await s.GetReport(request, **self._kw(timeout))

        return await self._invoke(run)

    async def wait(
        self,
        report_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        on_update: Callable[[pb.Report], None] | None = None,
    ) -> pb.Report:
        """See `ReportClient.wait`."""
        import asyncio  # noqa: PLC0415 -- only the async client needs it

        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        async def watch(s: pb_grpc.ReportServiceAsyncStub) -> pb.Report | None:
            stream = s.WatchReport(
                pb.WatchReportRequest(report_id=report_id),
                timeout=remaining(),
                metadata=self._conn.metadata,
            )
            async for response in stream:
                report = watched_report(response)
                if report is None:
                    continue
                if on_update is not None:
                    on_update(report)
                if report.state in TERMINAL_STATES:
                    return report
            return None

        while True:
            try:
                final = await self._invoke(watch)
                if final is not None:
                    return final
            except errors.Unavailable:
                pass
            left = remaining()
            if left is not None and left <= 0:
                raise errors.DeadlineExceeded(
                    f"report {report_id} was not finished after {timeout:g}s"
                )
            report = await self.get(report_id, timeout=min(self.timeout, left or self.timeout))
            if on_update is not None:
                on_update(report)
            if report.state in TERMINAL_STATES:
                return report
            await asyncio.sleep(poll_interval if left is None else min(poll_interval, left))

    async def list_pages(
        self,
        *,
        page_size: int = 0,
        states: Sequence[pb.ReportState.ValueType] = (),
        kinds: Sequence[str] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.ListReportsResponse]:
        """See `ReportClient.list_pages`."""
        request = build_list_request(
            page_size=page_size,
            states=states,
            kinds=kinds,
            created_after=created_after,
            created_before=created_before,
        )

        async def run(s: pb_grpc.ReportServiceAsyncStub) -> pb.ListReportsResponse:
            return await s.ListReports(request, **self._kw(timeout))

        while True:
            page = await self._invoke(run)
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def list(
        self,
        *,
        page_size: int = 0,
        states: Sequence[pb.ReportState.ValueType] = (),
        kinds: Sequence[str] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.Report]:
        """See `ReportClient.list`."""
        async for page in self.list_pages(
            page_size=page_size,
            states=states,
            kinds=kinds,
            created_after=created_after,
            created_before=created_before,
            timeout=timeout,
        ):
            for report in page.reports:
                yield report

    async def cancel(self, report_id: str, *, timeout: float | None = None) -> pb.Report:
        """See `ReportClient.cancel`."""
        request = pb.CancelReportRequest(report_id=report_id)

        async def run(s: pb_grpc.ReportServiceAsyncStub) -> pb.Report:
            return await s.CancelReport(request, **self._kw(timeout))

        return await self._invoke(run)

    async def delete(
        self, report_id: str, *, allow_missing: bool = False, timeout: float | None = None
    ) -> pb.DeleteReportResponse:
        """See `ReportClient.delete`."""
        request = pb.DeleteReportRequest(report_id=report_id, allow_missing=allow_missing)

        async def run(s: pb_grpc.ReportServiceAsyncStub) -> pb.DeleteReportResponse:
            return await s.DeleteReport(request, **self._kw(timeout))

        return await self._invoke(run)

    async def download(
        self,
        report_id: str,
        destination: str | os.PathLike[str] | IO[bytes],
        *,
        timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    ) -> pb.ResultMetadata:
        """See `ReportClient.download` (file writes are blocking; chunks are at most 1 MiB)."""
        request = pb.DownloadReportRequest(report_id=report_id)

        async def run(s: pb_grpc.ReportServiceAsyncStub) -> pb.ResultMetadata:
            sink = _Sink(destination)
            try:
                async for chunk in s.DownloadReport(request, **self._kw(timeout)):
                    sink.add(chunk)
            except BaseException:
                sink.abort()
                raise
            return sink.finish(report_id)

        return await self._invoke(run)

    async def kinds(self, *, timeout: float | None = None) -> builtins.list[pb.ReportKind]:
        """See `ReportClient.kinds`."""

        async def run(s: pb_grpc.ReportServiceAsyncStub) -> pb.ListReportKindsResponse:
            return await s.ListReportKinds(pb.ListReportKindsRequest(), **self._kw(timeout))

        return list((await self._invoke(run)).kinds)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
