"""A tenant's per-submit quotas (reportgrid/tenants.py): the largest inline input and the
retention a submit may ask for, and the retention it gets when it asks none. Applied alike
by the edge to every SubmitReport and by the scheduler to every fire (functions/scheduler).
The submit rate is grpc_edge/ratelimit.py's; the running reports are the workers'."""

from __future__ import annotations

from reportgrid.errors import FieldViolation, InvalidArgument
from reportgrid.tenants import Quotas
from reportgrid.v1 import reports_pb2 as pb


def apply_quotas(request: pb.SubmitReportRequest, quotas: Quotas) -> None:
    """Raise InvalidArgument naming the quota a valid request exceeds; give a request
    without a ttl the tenant's default retention (the task carries it to the workers)."""
    violations: list[FieldViolation] = []
    if request.HasField("input") and request.input.WhichOneof("source") == "inline_data":
        size = len(request.input.inline_data)
        if size > quotas.max_inline_bytes:
            violations.append(
                FieldViolation(
                    "input.inline_data",
                    f"is {size} bytes; this tenant's inline input is at most "
                    f"{quotas.max_inline_bytes} bytes (its quota), pass input.s3_uri instead",
                )
            )
    if request.HasField("ttl"):
        if request.ttl.seconds > quotas.retention_max_seconds:
            violations.append(
                FieldViolation(
                    "ttl",
                    f"is {request.ttl.seconds} s; this tenant keeps results at most "
                    f"{quotas.retention_max_seconds} s (its quota)",
                )
            )
    else:
        request.ttl.seconds = quotas.retention_default_seconds
    if violations:
        raise InvalidArgument(violations)
