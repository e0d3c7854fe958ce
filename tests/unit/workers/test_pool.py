"""The queue worker's pool children (functions/queue_worker/pool.py) keep one DuckDB
database each for every report they run, and each report still sees only its own files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from functions.queue_worker.pool import GeneratorPool
from reportgrid.engine import session
from reportgrid.engine.request import GenerateRequest, GenerateResult, InputData, RunLimits
from reportgrid.v1 import reports_pb2 as pb


def _probe(request: GenerateRequest) -> GenerateResult:
    """In the child: what the report's session sees (top-level: it is pickled by name)."""
    assert request.input is not None
    with session.open_session(request) as con:
        row = con.execute(f"SELECT count(*) FROM read_csv('{request.input.path}')").fetchone()
        try:
            con.execute(f"SELECT * FROM read_csv('{request.params['other']}')").fetchall()
            other = "read"
        except Exception:
            other = "refused"
    seen = {
        "pid": os.getpid(),
        "opened": session.SHARED.opened,
        "rows": row[0] if row else None,
        "other": other,
        "work_dir": request.work_dir,
    }
    return GenerateResult(json.dumps(seen).encode(), 1, "application/json")


def _request(root: Path, name: str, other: Path) -> GenerateRequest:
    work = root / name
    work.mkdir()
    path = work / "input.csv"
    path.write_text("a\n1\n2\n")
    return GenerateRequest(
        report_id=name,
        params={"other": str(other)},
        output_format=pb.OUTPUT_FORMAT_CSV,
        work_dir=str(work),
        input=InputData(pb.DATA_FORMAT_CSV, str(path)),
        limits=RunLimits(memory_limit_bytes=256 << 20, threads=1),
    )


def test_a_pool_child_reuses_its_database_and_sees_only_the_report_s_files(
    tmp_path: Path,
) -> None:
    # Given a file of another report in the same scratch root, and one pool child
    other = tmp_path / "other-report" / "input.csv"
    other.parent.mkdir()
    other.write_text("secret\n1\n")
    pool = GeneratorPool(1)
    try:
        # When three reports run on it one after another
        seen = [json.loads(pool(_probe, _request(tmp_path, f"r{i}", other)).data) for i in range(3)]
    finally:
        pool.shutdown(wait=True)
    # Then one child ran them on one database, each read its input, none the other file
    assert len({s["pid"] for s in seen}) == 1
    assert [s["opened"] for s in seen] == [1, 1, 1]
    assert [s["rows"] for s in seen] == [2, 2, 2]
    assert [s["other"] for s in seen] == ["refused"] * 3
    # ... each in a directory of its own, removed after its run
    assert len({s["work_dir"] for s in seen}) == 3
    assert not any(os.path.exists(s["work_dir"]) for s in seen)
