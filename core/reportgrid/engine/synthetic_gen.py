"""The generator of the synthetic kinds: burn CPU (checking for cancellation and the run's
deadline as it goes), then let DuckDB produce rows that are a pure function of the seed
(see kinds/synthetic), in the run's session (reportgrid/engine/session.py)."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Final

from reportgrid.engine import output
from reportgrid.engine.kinds.synthetic import VALUE_MODULUS, VALUE_MULTIPLIER
from reportgrid.engine.request import GenerateRequest, GenerateResult
from reportgrid.engine.session import open_session
from reportgrid.limits import RUN_CHECK_SECONDS

_MD5_HEX_CHARS: Final = 32


def burn_cpu(cpu_ms: int, request: GenerateRequest) -> None:
    """Spend `cpu_ms` of this process's CPU time hashing; raise Cancelled when asked and
    the time-limit failure once the run's deadline passes."""
    deadline = time.process_time() + cpu_ms / 1000
    next_check = 0.0
    digest = b"reportgrid"
    while (now := time.process_time()) < deadline:
        for _ in range(200):
            digest = hashlib.sha256(digest).digest()
        if now >= next_check:
            request.check()
            next_check = now + RUN_CHECK_SECONDS


def generate(request: GenerateRequest) -> GenerateResult:
    params = request.params
    cpu_ms = int(params.get("cpu_ms", 0))
    rows = int(params.get("output_rows", 100))
    total_bytes = int(params.get("output_bytes", 0))
    seed = int(params.get("seed", 0))
    request.check()
    burn_cpu(cpu_ms, request)
    request.check()

    payload = total_bytes // rows if rows else 0
    columns = [
        "range AS row",
        f"CAST((range * {VALUE_MULTIPLIER} + {seed}) % {VALUE_MODULUS} AS BIGINT) AS value",
    ]
    if payload:
        blocks = math.ceil(payload / _MD5_HEX_CHARS)
        columns.append(
            "left(array_to_string(list_transform(range("
            f"{blocks}), lambda j: md5(concat({seed}, ':', range, ':', j))), ''), {payload}) "
            "AS payload"
        )
    with open_session(request) as con:
        # Only integers from validated params are spliced in.
        query = f"SELECT {', '.join(columns)} FROM range({rows})"  # noqa: S608
        return output.write_query(con, query, request.output_format, request.work_dir)
