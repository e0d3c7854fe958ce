"""The client of ReportService: every call with its deadline, failover between endpoints,
waiting on a report, paging, verified downloads, and failures as `reportgrid.errors`."""

# ruff: noqa: ASYNC109 -- `timeout` here is the gRPC deadline sent with each call

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import IO, Any, Self, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2

from reportgrid import errors
from reportgrid.client._connection import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_TIMEOUT,
    HEALTH_CHECK_METHOD,
    HEALTH_CHECK_TIMEOUT,
    Connection,
)
from reportgrid.client._download import (
    AsyncUriDownload,
    DownloadSink,
    UriFailed,
    usable_uri,
)
from reportgrid.client._messages import (
    TERMINAL_STATES,
    build_list_request,
    build_submit_request,
    parse_view,
    watched_report,
)
from reportgrid.client._schedules import build_schedule, schedule_expression, update_mask
from reportgrid.status import from_rpc_error
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc as pb_grpc

_T = TypeVar("_T")
# A broken download stream is resumed (read_offset) this often, if each try made progress.
DOWNLOAD_RESUMES = 3


class AsyncReportClient:
    """A client of ReportService; a context manager that closes its channels.

    Args:
        endpoints: "host:port", a comma-separated list, or a sequence; tried in order.
        api_key: sent as `authorization: Bearer <key>` on every call.
        tls: use TLS (implied by `root_certificates`); system roots unless given.
        root_certificates: PEM bytes of the CA to trust.
        timeout: the default deadline of each call, in seconds.
        options: extra gRPC channel options (one named like the SDK's replaces it).
    """

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
        self._conn = Connection.of(
            endpoints,
            api_key=api_key,
            tls=tls,
            root_certificates=root_certificates,
            options=options,
        )
        self.timeout = timeout
        self._current = 0
        self._checked = False
        self._channels: dict[str, aio.Channel] = {}

    @property
    def endpoint(self) -> str:
        """The endpoint calls currently go to."""
        return self._conn.endpoints[self._current]

    def _channel(self, endpoint: str) -> aio.Channel:
        if endpoint not in self._channels:
            options = list(self._conn.options)
            self._channels[endpoint] = (
                aio.secure_channel(endpoint, self._conn.credentials(), options=options)
                if self._conn.tls
                else aio.insecure_channel(endpoint, options=options)
            )
        return self._channels[endpoint]

    def _kw(self, timeout: float | None) -> dict[str, Any]:
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "metadata": self._conn.metadata,
        }

    async def _serving(self, endpoint: str) -> bool:
        """False only when the endpoint is down or says NOT_SERVING; a server without the
        health service counts as serving."""
        check = self._channel(endpoint).unary_unary(
            HEALTH_CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_CHECK_TIMEOUT
            )
        except grpc.RpcError as err:
            return err.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _select(self, *, advance: bool) -> None:
        """Move to the first serving endpoint from the current one (or the next one); to
        that one itself when none is serving."""
        candidates = self._conn.candidates(self._current, advance=advance)
        self._current = candidates[0]
        if len(candidates) > 1:
            for index in candidates:
                if await self._serving(self._conn.endpoints[index]):
                    self._current = index
                    break
        self._checked = True

    async def _invoke(self, call: Callable[[pb_grpc.ReportServiceAsyncStub], Awaitable[_T]]) -> _T:
        """Run `call` on the current endpoint; on UNAVAILABLE, on the next serving one
        (each endpoint once). Every other failure is raised as a `reportgrid.errors` class."""
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
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- the API ---------------------------------------------------------------------------

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
        idempotency_key: str | None = None,
        ttl: timedelta | float | None = None,
        durability: pb.Durability.ValueType | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> pb.SubmitReportResponse:
        """Submit a report; returns its id at once. An idempotency key is generated unless
        given, so retries (the channel's and yours with the same key) never run it twice.
        The input is a file (format from its extension unless `input_format`), bytes or an
        "s3://bucket/key" URI (both need `input_format`). `labels` are returned on the
        report and filter `list` (keys [a-z][a-z0-9_-]*, values [a-z0-9_-]*, 63 characters
        each, at most 64)."""
        request = build_submit_request(
            kind,
            params,
            input_file=input_file,
            input_data=input_data,
            input_s3_uri=input_s3_uri,
            input_format=input_format,
            output_format=output_format,
            idempotency_key=idempotency_key,
            ttl=ttl,
            durability=durability,
            labels=labels,
        )

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.SubmitReportResponse:
            return await stub.SubmitReport(request, **self._kw(timeout))

        try:
            return await self._invoke(run)
        except errors.IdempotencyKeyReused as err:  # named: the key may be a generated one
            raise errors.IdempotencyKeyReused(err.message, key=request.idempotency_key) from None

    async def get(
        self,
        report_id: str,
        *,
        include_content: bool = False,
        view: pb.ReportView.ValueType | str | None = None,
        timeout: float | None = None,
    ) -> pb.Report:
        """The report's current state (and result metadata once SUCCEEDED). `view="full"`
        adds `spec`: what it was submitted with."""
        request = pb.GetReportRequest(
            report_id=report_id, include_content=include_content, view=parse_view(view)
        )

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Report:
            return await stub.GetReport(request, **self._kw(timeout))

        return await self._invoke(run)

    async def wait(
        self,
        report_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        on_update: Callable[[pb.Report], None] | None = None,
    ) -> pb.Report:
        """Return the report once it is terminal. Follows WatchReport (skipping its
        heartbeats); when a stream ends UNAVAILABLE (its longest duration reached, a server
        draining, a lost connection) or early, reads GetReport once and watches again after
        `poll_interval` s. `on_update` sees every state received. Raises DeadlineExceeded
        after `timeout` s (default: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        async def watch(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Report | None:
            """The terminal report, or None when the stream ended before it."""
            answered = False
            stream = stub.WatchReport(
                pb.WatchReportRequest(report_id=report_id),
                timeout=remaining(),
                metadata=self._conn.metadata,
            )
            try:
                async for response in stream:
                    answered = True
                    report = watched_report(response)
                    if report is None:
                        continue
                    if on_update is not None:
                        on_update(report)
                    if report.state in TERMINAL_STATES:
                        return report
            except grpc.RpcError as err:
                # A stream that was answering and then ends UNAVAILABLE says "watch again",
                # not "this endpoint is down": that is no reason to fail over.
                if not (answered and err.code() == grpc.StatusCode.UNAVAILABLE):
                    raise
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
        labels: Mapping[str, str] | None = None,
        view: pb.ReportView.ValueType | str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.ListReportsResponse]:
        """The caller's reports, newest first (the only order), one page at a time; only
        those carrying every one of `labels`. A page may be shorter than `page_size`
        (which is at most 500) with more to come."""
        request = build_list_request(
            page_size=page_size,
            states=states,
            kinds=kinds,
            created_after=created_after,
            created_before=created_before,
            labels=labels,
            view=view,
        )

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.ListReportsResponse:
            return await stub.ListReports(request, **self._kw(timeout))

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
        labels: Mapping[str, str] | None = None,
        view: pb.ReportView.ValueType | str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.Report]:
        """Every matching report, newest first; pages are fetched as the iteration goes."""
        async for page in self.list_pages(
            page_size=page_size,
            states=states,
            kinds=kinds,
            created_after=created_after,
            created_before=created_before,
            labels=labels,
            view=view,
            timeout=timeout,
        ):
            for report in page.reports:
                yield report

    async def cancel(self, report_id: str, *, timeout: float | None = None) -> pb.Report:
        """Request cancellation (best effort); returns the report as it now is."""
        request = pb.CancelReportRequest(report_id=report_id)

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Report:
            return await stub.CancelReport(request, **self._kw(timeout))

        return await self._invoke(run)

    async def delete(
        self, report_id: str, *, allow_missing: bool = False, timeout: float | None = None
    ) -> pb.DeleteReportResponse:
        """Delete a report and its result."""
        request = pb.DeleteReportRequest(report_id=report_id, allow_missing=allow_missing)

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.DeleteReportResponse:
            return await stub.DeleteReport(request, **self._kw(timeout))

        return await self._invoke(run)

    async def download(
        self,
        report_id: str,
        destination: str | os.PathLike[str] | IO[bytes],
        *,
        timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        use_uri: bool = True,
    ) -> pb.ResultMetadata:
        """Download the result to a file path (written atomically, only if the SHA-256
        matches) or a binary stream; returns the result metadata. Raises ChecksumMismatch
        when the bytes do not match the metadata.

        With `use_uri` a result stored in S3 comes straight from S3 by its presigned URL
        (DownloadReportRequest.prefer_uri); when the URL fails (expired, 403, network) the
        rest streams through the edge from where it stopped (read_offset), and a broken
        stream is resumed the same way."""
        sink = DownloadSink(destination)
        try:
            if use_uri:
                uri = await self._download_stream(report_id, sink, timeout, prefer_uri=True)
                if uri is not None:
                    with contextlib.suppress(UriFailed):  # then the stream sends the rest
                        await AsyncUriDownload.run(uri, sink, timeout)
            if not use_uri or sink.metadata is None or sink.size < sink.metadata.size_bytes:
                await self._download_stream(report_id, sink, timeout, prefer_uri=False)
        except BaseException:
            sink.abort()
            raise
        return sink.finish(report_id)

    async def _download_stream(
        self, report_id: str, sink: DownloadSink, timeout: float, *, prefer_uri: bool
    ) -> str | None:
        """DownloadReport into the sink from sink.size on, resumed (read_offset) after a
        stream that broke having made progress; the usable URL when one was offered."""
        for _ in range(DOWNLOAD_RESUMES + 1):
            start = sink.size
            request = pb.DownloadReportRequest(
                report_id=report_id, read_offset=start, prefer_uri=prefer_uri
            )

            async def run(
                stub: pb_grpc.ReportServiceAsyncStub, request: pb.DownloadReportRequest = request
            ) -> str | None:
                async for chunk in stub.DownloadReport(request, **self._kw(timeout)):
                    if chunk.metadata.download_uri:
                        sink.metadata = chunk.metadata
                        return usable_uri(chunk.metadata, allow_http=not self._conn.tls)
                    sink.add(chunk)
                return None

            try:
                return await self._invoke(run)
            except (errors.Unavailable, errors.DeadlineExceeded):
                if sink.size == start:  # no progress: resuming would not help
                    raise
        raise errors.Unavailable(f"the download of {report_id} kept breaking; retry")

    async def kinds(self, *, timeout: float | None = None) -> builtins.list[pb.ReportKind]:
        """The report kinds on offer, with their parameter schemas."""
        request = pb.ListReportKindsRequest()

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.ListReportKindsResponse:
            return await stub.ListReportKinds(request, **self._kw(timeout))

        reply = await self._invoke(run)
        return list(reply.kinds)

    # -- schedules (docs/SCHEDULES.md) ------------------------------------------------------

    async def create_schedule(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        rate: str | None = None,
        time_zone: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        overlap: pb.OverlapPolicy.ValueType | str | None = None,
        description: str | None = None,
        notify_url: str | None = None,
        input_file: str | os.PathLike[str] | None = None,
        input_data: bytes | None = None,
        input_s3_uri: str | None = None,
        input_format: pb.DataFormat.ValueType | str | None = None,
        output_format: pb.OutputFormat.ValueType | str | None = None,
        ttl: timedelta | float | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> pb.Schedule:
        """Run the report `kind` (with the arguments `submit` takes) on a schedule: `cron`
        ("0 8 * * MON", matched in `time_zone`, UTC unless given) or `rate` ("5 minutes").
        `overlap` is "skip" (the default: no fire while the last report runs) or "allow".
        Each fire is an ordinary report labelled `reportgrid-schedule=<schedule id>`."""
        template = build_submit_request(
            kind,
            params,
            input_file=input_file,
            input_data=input_data,
            input_s3_uri=input_s3_uri,
            input_format=input_format,
            output_format=output_format,
            ttl=ttl,
            labels=labels,
        )
        request = pb.CreateScheduleRequest(
            schedule=build_schedule(
                template,
                expression=schedule_expression(cron=cron, rate=rate),
                time_zone=time_zone,
                start_time=start_time,
                end_time=end_time,
                overlap=overlap,
                description=description,
                notify_url=notify_url,
            )
        )

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Schedule:
            return await stub.CreateSchedule(request, **self._kw(timeout))

        return await self._invoke(run)

    async def get_schedule(self, schedule_id: str, *, timeout: float | None = None) -> pb.Schedule:
        """A schedule, with its next fire time and counts."""
        request = pb.GetScheduleRequest(schedule_id=schedule_id)

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Schedule:
            return await stub.GetSchedule(request, **self._kw(timeout))

        return await self._invoke(run)

    async def list_schedule_pages(
        self, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.ListSchedulesResponse]:
        """The caller's schedules, newest first, one page at a time."""
        request = pb.ListSchedulesRequest(page_size=page_size)

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.ListSchedulesResponse:
            return await stub.ListSchedules(request, **self._kw(timeout))

        while True:
            page = await self._invoke(run)
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def list_schedules(
        self, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.Schedule]:
        """Every schedule of the caller, newest first; pages are fetched as it goes."""
        async for page in self.list_schedule_pages(page_size=page_size, timeout=timeout):
            for schedule in page.schedules:
                yield schedule

    async def update_schedule(
        self,
        schedule_id: str,
        *,
        cron: str | None = None,
        rate: str | None = None,
        time_zone: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        overlap: pb.OverlapPolicy.ValueType | str | None = None,
        description: str | None = None,
        template: pb.SubmitReportRequest | None = None,
        clear: Sequence[str] = (),
        expected_version: int = 0,
        timeout: float | None = None,
    ) -> pb.Schedule:
        """Change the given fields (the others stay); `clear` names fields to reset, e.g.
        ("end_time",). With `expected_version` the change applies only to that version
        (else FailedPrecondition)."""
        expression = None
        if cron is not None or rate is not None:
            expression = schedule_expression(cron=cron, rate=rate)
        # Only the fields in the mask count: the rest of this message is ignored.
        schedule = build_schedule(
            template or pb.SubmitReportRequest(),
            expression=expression or "",
            time_zone=time_zone,
            start_time=start_time,
            end_time=end_time,
            overlap=overlap,
            description=description,
        )
        schedule.schedule_id = schedule_id
        given = {
            "expression": expression,
            "time_zone": time_zone,
            "template": template,
            "start_time": start_time,
            "end_time": end_time,
            "overlap_policy": overlap,
            "description": description,
        }
        paths = [*clear, *(name for name, value in given.items() if value is not None)]
        request = pb.UpdateScheduleRequest(
            schedule=schedule, update_mask=update_mask(paths), expected_version=expected_version
        )

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Schedule:
            return await stub.UpdateSchedule(request, **self._kw(timeout))

        return await self._invoke(run)

    async def pause_schedule(
        self, schedule_id: str, *, expected_version: int = 0, timeout: float | None = None
    ) -> pb.Schedule:
        """Stop the schedule firing until it is resumed (a paused one is returned as is)."""
        request = pb.PauseScheduleRequest(
            schedule_id=schedule_id, expected_version=expected_version
        )

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Schedule:
            return await stub.PauseSchedule(request, **self._kw(timeout))

        return await self._invoke(run)

    async def resume_schedule(
        self, schedule_id: str, *, expected_version: int = 0, timeout: float | None = None
    ) -> pb.Schedule:
        """Let a paused schedule fire again from its next fire after now (missed fires are
        not replayed)."""
        request = pb.ResumeScheduleRequest(
            schedule_id=schedule_id, expected_version=expected_version
        )

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.Schedule:
            return await stub.ResumeSchedule(request, **self._kw(timeout))

        return await self._invoke(run)

    async def delete_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> pb.DeleteScheduleResponse:
        """Delete a schedule (its reports stay). NotFound when there is none."""
        request = pb.DeleteScheduleRequest(schedule_id=schedule_id)

        async def run(stub: pb_grpc.ReportServiceAsyncStub) -> pb.DeleteScheduleResponse:
            return await stub.DeleteSchedule(request, **self._kw(timeout))

        return await self._invoke(run)

    async def close(self) -> None:
        """Close every channel; calls made later open new ones."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
