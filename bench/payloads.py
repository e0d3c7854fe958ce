"""The requests every scenario sends and the replies a correct server gives, built from the
real proto and the real record mapping. The null server answers with these same replies,
so the baseline moves exactly as many bytes as the edge.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from typing import Final

from google.protobuf.struct_pb2 import Struct

from reportgrid.ids import IdCodec
from reportgrid.records import ReportRecord, ResultInfo, to_proto
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb

SERVICE: Final = "reportgrid.v1.ReportService"
SUBMIT: Final = "SubmitReport"
GET: Final = "GetReport"
TENANT: Final = "bench-tenant"
REGION: Final = "us-east-1"
ID_SECRET: Final = "bench-id-secret-0123456789abcdef"  # local runs only
LIGHT_KIND: Final = "synthetic"
# Small: the report runs in milliseconds on a stream worker, so end-to-end figures measure
# the pipeline, not the generator.
LIGHT_PARAMS: Final = {"output_rows": 10, "seed": 7}
RESULT_CSV: Final = b"row,value\n" + b"".join(
    f"{row},{(row * 7919 + 7) % 10007}\n".encode() for row in range(10)
)
RETENTION_S: Final = 7 * 24 * 3600


def method_path(method: str) -> str:
    return f"/{SERVICE}/{method}"


def codec() -> IdCodec:
    return IdCodec([ID_SECRET.encode()])


def submit_request() -> pb.SubmitReportRequest:
    params = Struct()
    params.update(LIGHT_PARAMS)
    # No idempotency key: h2load sends the same body every time, and a key would make every
    # call after the first a deduplicated no-op.
    return pb.SubmitReportRequest(
        kind=LIGHT_KIND, params=params, output_format=pb.OUTPUT_FORMAT_CSV
    )


def submit_response(ids: IdCodec) -> pb.SubmitReportResponse:
    """What the edge answers to a new submit (a fresh id is always this long)."""
    return pb.SubmitReportResponse(
        report_id=ids.new(TENANT, REGION).value, state=pb.REPORT_STATE_PENDING
    )


def succeeded_record(ids: IdCodec, *, now_ms: int | None = None) -> ReportRecord:
    """A terminal report as a stream worker leaves it: small inline CSV result."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    report_id = ids.new(TENANT, REGION, now_ms=now - 2000).value
    return ReportRecord(
        report_id=report_id,
        tenant=TENANT,
        kind=LIGHT_KIND,
        state=State.SUCCEEDED,
        created_ms=now - 2000,
        home_region=REGION,
        region=REGION,
        started_ms=now - 1500,
        ended_ms=now - 1000,
        expires_at=(now // 1000) + RETENTION_S,
        attempts=1,
        result=ResultInfo(
            size_bytes=len(RESULT_CSV),
            content_type="text/csv",
            sha256=hashlib.sha256(RESULT_CSV).hexdigest(),
            row_count=10,
            generator_version=1,
            inline_compressed=zlib.compress(RESULT_CSV),
        ),
        revision=3,
    )


def get_request(report_id: str) -> pb.GetReportRequest:
    return pb.GetReportRequest(report_id=report_id)


def get_response(record: ReportRecord) -> pb.Report:
    return to_proto(record, now_ms=time.time_ns() // 1_000_000)


@dataclass(frozen=True, slots=True)
class Replies:
    """What the null server answers, per method (serialized)."""

    submit: bytes
    get: bytes

    @classmethod
    def build(cls, ids: IdCodec, hot: ReportRecord) -> Replies:
        return cls(
            submit=submit_response(ids).SerializeToString(),
            get=get_response(hot).SerializeToString(),
        )
