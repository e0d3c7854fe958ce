"""The process each Fargate container runs, as ECS composes it: the image's ENTRYPOINT (from
the Dockerfile, exec form) followed by the task definition's Command (which replaces the
image's CMD). ECS: Command "maps to Cmd" of docker create; Docker appends Cmd to Entrypoint
(docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html; AWS Open
Source blog "Demystifying ENTRYPOINT and CMD in Docker": ENTRYPOINT + CMD = argv).
The argv is then run here, cheaply, to prove it starts the intended program.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from cdk.constructs.edge_service import EDGE_COMMAND
from cdk.constructs.queue_worker import STANDBY_COMMAND, WORKER_COMMAND
from tests.infra.conftest import Synthesized, project_dir


def dockerfile_final_stage(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of the last build stage; comments and blank lines dropped,
    continuation lines joined, as the Dockerfile parser reads them."""
    steps: list[tuple[str, str]] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, rest = logical.strip().partition(" ")
        steps.append((keyword.upper(), rest.strip()))
        logical = ""
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def exec_form(stage: list[tuple[str, str]], keyword: str) -> list[str] | None:
    """The last `keyword` instruction of the stage as an exec-form argv (None if absent).
    A shell-form value fails: ECS would wrap it in /bin/sh -c, and SIGTERM would stop at
    the shell instead of reaching python."""
    values = [rest for k, rest in stage if k == keyword]
    if not values:
        return None
    try:
        argv = json.loads(values[-1])
    except json.JSONDecodeError:
        pytest.fail(f"Dockerfile {keyword} {values[-1]!r} is not exec form (a JSON array)")
    assert isinstance(argv, list)
    assert all(isinstance(a, str) for a in argv)
    return argv


@pytest.fixture(scope="module")
def stage() -> list[tuple[str, str]]:
    return dockerfile_final_stage((project_dir() / "Dockerfile").read_text())


def containers(template: Template) -> list[dict[str, Any]]:
    return [
        c
        for task in template.find_resources("AWS::ECS::TaskDefinition").values()
        for c in task["Properties"]["ContainerDefinitions"]
    ]


def ecs_argv(stage: list[tuple[str, str]], container: dict[str, Any]) -> list[str]:
    """What ECS starts: the container's EntryPoint (or the image's), then its Command (or
    the image's CMD)."""
    entrypoint = container.get("EntryPoint", exec_form(stage, "ENTRYPOINT"))
    if entrypoint is None:
        pytest.fail(
            "the Dockerfile's final stage sets no ENTRYPOINT, so the base image's applies "
            "(unknown here); set it explicitly (ENTRYPOINT [] for none)"
        )
    command = container.get("Command", exec_form(stage, "CMD") or [])
    return [*entrypoint, *command]


def image_packages(stage_text: str) -> set[str]:
    """Top-level packages the image build copies in (COPY <pkg> ./<pkg>)."""
    return set(re.findall(r"^COPY (\w+) \./\1$", stage_text, flags=re.MULTILINE))


def python_module(argv: list[str]) -> str:
    assert argv[:2] == ["python", "-m"], f"not `python -m <module>`: {argv}"
    assert len(argv) >= 3, f"no module: {argv}"
    return argv[2]


def test_every_container_argv_is_python_m_an_importable_module(
    synth: Synthesized, stage: list[tuple[str, str]]
) -> None:
    packages = image_packages((project_dir() / "Dockerfile").read_text())
    seen: dict[str, list[str]] = {}
    for region in synth.config.regions:
        for container in containers(synth.regional(region)):
            argv = ecs_argv(stage, container)
            module = python_module(argv)
            assert module.split(".")[0] in packages, f"{module} is not copied into the image"
            assert importlib.util.find_spec(f"{module}.__main__") is not None, argv
            seen[container["Name"]] = argv
    assert seen == {
        "edge": list(EDGE_COMMAND),
        "worker": list(WORKER_COMMAND),
        "standby": list(STANDBY_COMMAND),
    }
    # `docker run IMAGE` (no command) runs the edge too.
    assert ecs_argv(stage, {}) == list(EDGE_COMMAND)


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # The image's `python` is its venv's (PATH=/app/.venv/bin); here, this venv's.
    return subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=tmp_path,
        env={},  # bare: the settings come only from the task definition
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_edge_argv_starts_the_edge(
    eu: Template, stage: list[tuple[str, str]], tmp_path: Path
) -> None:
    (edge,) = (c for c in containers(eu) if c["Name"] == "edge")
    result = _run([*ecs_argv(stage, edge), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m grpc_edge" in result.stdout


@pytest.mark.parametrize("name", ["worker", "standby"])
def test_the_worker_argvs_start_their_workers(
    eu: Template, stage: list[tuple[str, str]], tmp_path: Path, name: str
) -> None:
    (container,) = (c for c in containers(eu) if c["Name"] == name)
    argv = ecs_argv(stage, container)
    # No settings: each worker's main runs and exits 2 naming what is missing (its cheap
    # mode); a wrong argv would exit 1 with "No module named ...".
    result = _run(argv, tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"ERROR {python_module(argv)} invalid configuration" in result.stderr
    assert "No module named" not in result.stderr


def test_image_health_check_is_the_edge_probe_and_no_worker_runs_it(
    synth: Synthesized, stage: list[tuple[str, str]], tmp_path: Path
) -> None:
    (check,) = [rest for k, rest in stage if k == "HEALTHCHECK"]
    argv = json.loads(check[check.index("CMD") + len("CMD") :].strip())
    module = python_module(argv)
    assert module == "grpc_edge.healthcheck"
    assert importlib.util.find_spec(module) is not None
    assert _run([*argv, "--help"], tmp_path).returncode == 0
    # ECS runs only the health checks a container definition names and ignores the
    # image's (API_HealthCheck: "does not monitor Docker health checks that are embedded in
    # a container image"); a worker must never name the edge's probe, which would fail.
    for region in synth.config.regions:
        for container in containers(synth.regional(region)):
            health = container.get("HealthCheck")
            if container["Name"] != "edge":
                assert health is None or module not in json.dumps(health), container["Name"]


def test_dockerfile_comment_cannot_stand_in_for_an_instruction() -> None:
    # The parser reads instructions only: an ENTRYPOINT in a comment is no ENTRYPOINT.
    stage = dockerfile_final_stage('FROM x\n# ENTRYPOINT ["python", "-m"]\nCMD ["a"]\n')
    assert exec_form(stage, "ENTRYPOINT") is None
    assert exec_form(stage, "CMD") == ["a"]
