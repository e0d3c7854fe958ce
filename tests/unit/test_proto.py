"""The committed generated code matches proto/, and the public API is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from reportgrid.v1 import reports_pb2

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_PROTO = ROOT / "proto/reportgrid/v1/reports.proto"
# Declarations that must carry a comment: rpcs, messages, enums, fields and enum values.
DECLARATION = re.compile(
    r"^\s*(rpc \w+|message \w+|enum \w+|(repeated )?[\w.]+ \w+ = \d+;|[A-Z_0-9]+ = \d+;)"
)


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "the generator wrote nothing"
    stale = [str(p) for p in generated if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not stale, f"run `make proto`: {stale} differ from proto/"


def test_every_declaration_in_the_public_api_is_documented() -> None:
    lines = PUBLIC_PROTO.read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if not DECLARATION.match(line) or "//" in line:
            continue
        previous = lines[i - 1].strip()
        # Fields may also be documented in the comment above a oneof they belong to.
        if not previous.startswith("//") and not previous.startswith("oneof"):
            undocumented.append(f"{i + 1}: {line.strip()}")
    assert not undocumented, "document these in reports.proto:\n" + "\n".join(undocumented)


def test_the_service_has_every_rpc_of_the_api() -> None:
    service = reports_pb2.DESCRIPTOR.services_by_name["ReportService"]
    assert {m.name for m in service.methods} == {
        "SubmitReport",
        "GetReport",
        "WatchReport",
        "ListReports",
        "CancelReport",
        "DeleteReport",
        "DownloadReport",
        "ListReportKinds",
        "CreateSchedule",
        "GetSchedule",
        "ListSchedules",
        "UpdateSchedule",
        "PauseSchedule",
        "ResumeSchedule",
        "DeleteSchedule",
    }
    streaming = {m.name for m in service.methods if m.server_streaming}
    assert streaming == {"WatchReport", "DownloadReport"}
