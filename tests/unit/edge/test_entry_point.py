"""The edge's entry point forks its workers before gRPC is imported (grpc core does not
survive a fork once its threads run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_entry_point_does_not_import_grpc_before_forking() -> None:
    code = (
        "import sys, grpc_edge, grpc_edge.__main__, grpc_edge.workers; "
        "sys.exit(1 if 'grpc' in sys.modules else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
