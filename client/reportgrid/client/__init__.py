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

One source for both clients (httpcore's way): `AsyncReportClient` is written once, in
`_async/client.py`, and client/unasync.py generates `ReportClient` (`_sync/client.py`)
from it by token substitutions (`async def` -> `def`, `await ` dropped, grpc.aio channels ->
grpc channels, `asyncio.sleep` -> `time.sleep`, ...); `make lint` fails when the generated
file is stale. What does not depend on the flavour is plain code both import: the messages
(`_messages.py`), download verification (`_download.py`) and endpoints and channel options
(`_connection.py`).
"""

from reportgrid.client._async.client import AsyncReportClient
from reportgrid.client._connection import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_TIMEOUT,
    HEALTH_CHECK_METHOD,
    KEEPALIVE_OPTIONS,
    SERVICE_CONFIG,
    SERVICE_NAME,
)
from reportgrid.client._download import ChecksumMismatch
from reportgrid.client._messages import (
    OUTPUT_FORMATS,
    TERMINAL_STATES,
    VIEWS,
    ReportInputSpec,
    build_list_request,
    build_submit_request,
    data_format_for,
    error_info,
    error_summary,
    parse_data_format,
    parse_labels,
    parse_view,
    state_name,
    watched_report,
)
from reportgrid.client._sync.client import ReportClient

__all__ = [
    "DEFAULT_DOWNLOAD_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "HEALTH_CHECK_METHOD",
    "KEEPALIVE_OPTIONS",
    "OUTPUT_FORMATS",
    "SERVICE_CONFIG",
    "SERVICE_NAME",
    "TERMINAL_STATES",
    "VIEWS",
    "AsyncReportClient",
    "ChecksumMismatch",
    "ReportClient",
    "ReportInputSpec",
    "build_list_request",
    "build_submit_request",
    "data_format_for",
    "error_info",
    "error_summary",
    "parse_data_format",
    "parse_labels",
    "parse_view",
    "state_name",
    "watched_report",
]
