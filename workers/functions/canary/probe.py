"""One probe: submit a tiny light report, watch it to its end, get it with its content and
check the content is what the kind promises. Every step has its share of one deadline, and
the probe never raises: it says where it stopped and why.

The report is `synthetic` (light: run by this region's stream worker) with a few rows whose
values are a pure function of the seed (core/reportgrid/engine/kinds/synthetic.py), so the
canary checks the numbers, not only that something came back. A report that another region
ran (the peer's standby took it over) is a failure of this region.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Final

from reportgrid import errors
from reportgrid.client import ReportClient
from reportgrid.v1 import reports_pb2 as pb

KIND: Final = "synthetic"
ROWS: Final = 3
# As the kind computes its values (synthetic.py VALUE_MULTIPLIER, VALUE_MODULUS).
VALUE_MULTIPLIER: Final = 7919
VALUE_MODULUS: Final = 10007
# The shortest TTL SubmitReport accepts is a minute; an hour keeps the canary's reports
# readable while someone looks at a failure, and lets them expire by themselves.
REPORT_TTL: Final = timedelta(hours=1)
# No single call may take the whole deadline.
CALL_TIMEOUT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    stage: str  # where it stopped: submit, watch, get, verify; "done" when ok
    reason: str  # "" when ok: the error class, or the check that failed
    latency_ms: float  # submit to verified content (or to the failure)
    report_id: str | None = None
    ran_in: str | None = None  # the region whose worker ran it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_values(seed: int) -> list[int]:
    return [(row * VALUE_MULTIPLIER + seed) % VALUE_MODULUS for row in range(ROWS)]


def check_report(report: pb.Report, *, seed: int, home_region: str) -> str:
    """ "" when the report is what the probe asked for, else what is wrong with it."""
    if report.state != pb.REPORT_STATE_SUCCEEDED:
        error = (
            f" ({report.error.code}: {report.error.message})" if report.HasField("error") else ""
        )
        return f"ended {pb.ReportState.Name(report.state)}{error}"
    if report.region != home_region:
        return f"ran in {report.region or 'no region'}, not {home_region}"
    result = report.result
    if not result.content:
        return "no content returned"
    if hashlib.sha256(result.content).hexdigest() != result.sha256:
        return "content does not match its sha256"
    if result.row_count != ROWS:
        return f"{result.row_count} rows, not {ROWS}"
    try:
        rows = list(csv.DictReader(io.StringIO(result.content.decode())))
        values = [int(row["value"]) for row in rows]
    except (UnicodeDecodeError, KeyError, ValueError, csv.Error) as err:
        return f"content is not the kind's CSV ({type(err).__name__}: {err})"
    if values != expected_values(seed):
        return f"values {values}, not {expected_values(seed)}"
    return ""


def run_probe(
    client: ReportClient,
    *,
    home_region: str,
    deadline_seconds: float,
    seed: int,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    started = clock()

    def left() -> float:
        return max(0.1, deadline_seconds - (clock() - started))

    def call_timeout() -> float:
        return min(CALL_TIMEOUT_SECONDS, left())

    def result(stage: str, reason: str, **found: Any) -> ProbeResult:
        elapsed_ms = (clock() - started) * 1000.0
        return ProbeResult(not reason, stage, reason, round(elapsed_ms, 1), **found)

    stage, report_id = "submit", None
    try:
        accepted = client.submit(
            KIND,
            {"output_rows": ROWS, "seed": seed},
            output_format="csv",
            ttl=REPORT_TTL,
            timeout=call_timeout(),
        )
        report_id = accepted.report_id
        stage = "watch"
        client.wait(report_id, timeout=left())
        stage = "get"
        report = client.get(report_id, include_content=True, timeout=call_timeout())
    except errors.ReportgridError as err:
        return result(stage, f"{type(err).__name__}: {err}", report_id=report_id)
    problem = check_report(report, seed=seed, home_region=home_region)
    return result(
        "verify" if problem else "done", problem, report_id=report_id, ran_in=report.region
    )
