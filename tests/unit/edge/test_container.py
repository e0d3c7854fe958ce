"""The Dockerfile keeps its promises (it cannot be built on the test machine), and the
edge's entry point forks before gRPC is imported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def test_multi_stage_on_slim_python() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert re.match(r"python:\$\{PYTHON_VERSION\}-slim", final_stage()[0][1])
    assert "ARG PYTHON_VERSION=3.11" in DOCKERFILE


def test_runtime_dependencies_only_from_the_lock() -> None:
    syncs = [rest for keyword, rest in instructions() if keyword == "RUN" and "uv sync" in rest]
    assert syncs
    assert all("--frozen" in s and "--no-default-groups" in s for s in syncs)
    assert not any(re.search(r"--group|--all-groups|--extra", s) for s in syncs)


def test_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")


def test_health_check_calls_grpc_health() -> None:
    (check,) = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    assert "grpc_edge.healthcheck" in check
    assert (ROOT / "grpc_edge" / "healthcheck.py").exists()


def test_one_image_runs_the_edge_by_default_and_the_worker_by_command() -> None:
    stage = dict(final_stage())
    # No ENTRYPOINT: ECS appends a task's Command to it (tests/artifacts checks the join).
    assert stage["ENTRYPOINT"] == "[]"
    assert stage["CMD"] == '["python", "-m", "grpc_edge"]'
    assert "functions.queue_worker" in DOCKERFILE
    assert "COPY functions ./functions" in DOCKERFILE


def test_the_entry_point_does_not_import_grpc_before_forking() -> None:
    code = (
        "import sys, grpc_edge, grpc_edge.__main__, grpc_edge.workers; "
        "sys.exit(1 if 'grpc' in sys.modules else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
