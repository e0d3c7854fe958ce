"""The process each Fargate container runs, as ECS composes it, started from what its image
holds. ECS starts the image's ENTRYPOINT (from the Dockerfile target's stage chain, exec
form) followed by the task definition's Command (which replaces the image's CMD): Command
"maps to Cmd" of docker create, and Docker appends Cmd to Entrypoint
(docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html; AWS Open
Source blog "Demystifying ENTRYPOINT and CMD in Docker": ENTRYPOINT + CMD = argv).

The image's tree is built here by the Dockerfile's own build steps (conftest `images`), and
each argv runs under the image's Python version with only that tree on the path (-S: no
site-packages, PYTHONPATH=/app/lib as the image sets it), so a module the image lacks, or a
dependency its distribution does not declare, fails here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cdk.artifacts import ARTIFACTS
from cdk.constructs.edge_service import EDGE_COMMAND
from cdk.constructs.queue_worker import (
    STANDBY_COMMAND,
    WORKER_COMMAND,
    XRAY_DAEMON_CONTAINER,
    XRAY_DAEMON_IMAGE,
)
from reportgrid.local.dockerfile import Stage, default_target, exec_form, last, stages
from tests.artifacts.conftest import Bundled, ImageTree
from tests.artifacts.contents import footprint, forbidden
from tests.artifacts.dockerfile import artifact_steps, build_stage_of
from tests.artifacts.interpreters import python_interpreter
from tests.infra.conftest import project_dir

# Which Dockerfile target each container's image is built from (cdk/stacks: ServiceImage).
TARGET_OF = {"edge": "edge", "worker": "worker", "standby": "worker"}


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, Stage]:
    return stages((project_dir() / "Dockerfile").read_text())


def all_containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::ECS::TaskDefinition"
        for c in resource["Properties"]["ContainerDefinitions"]
    ]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers that run our images: an asset image is a reference to the assets
    repository (an Fn::Sub), a public image a plain string."""
    return [c for c in all_containers(template) if not isinstance(c["Image"], str)]


def test_the_only_foreign_container_is_the_pinned_xray_daemon(bundled: Bundled) -> None:
    for stack, template in regional_templates(bundled).items():
        for c in all_containers(template):
            if isinstance(c["Image"], str):
                assert (c["Name"], c["Image"]) == (XRAY_DAEMON_CONTAINER, XRAY_DAEMON_IMAGE), stack
                # A sidecar: the task lives and dies with its worker container, not with it.
                assert c["Essential"] is False, stack


def regional_templates(bundled: Bundled) -> dict[str, dict[str, Any]]:
    return {name: t for name, t in bundled.templates.items() if containers(t)}


def ecs_argv(dockerfile: dict[str, Stage], target: str, container: dict[str, Any]) -> list[str]:
    """What ECS starts: the container's EntryPoint (or the image's), then its Command (or
    the image's CMD)."""
    entrypoint = container.get(
        "EntryPoint", exec_form(last(dockerfile, target, "ENTRYPOINT"), "ENTRYPOINT")
    )
    if entrypoint is None:
        pytest.fail(
            f"the Dockerfile's {target} target sets no ENTRYPOINT, so the base image's "
            "applies (unknown here); set it explicitly (ENTRYPOINT [] for none)"
        )
    command = container.get("Command", exec_form(last(dockerfile, target, "CMD"), "CMD") or [])
    return [*entrypoint, *command]


def image_python(dockerfile_text: str) -> Path:
    match = re.search(r"^ARG PYTHON_VERSION=(\d+)\.(\d+)$", dockerfile_text, flags=re.MULTILINE)
    assert match, "the Dockerfile pins no ARG PYTHON_VERSION"
    return python_interpreter(int(match[1]), int(match[2]))


def run_in_image(
    tree: ImageTree, argv: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`argv` as the image runs it: its `python` (the Dockerfile's version) with the image's
    tree as the only code beyond the standard library."""
    assert argv[0] == "python", f"the image has only `python` on PATH: {argv}"
    python = image_python((project_dir() / "Dockerfile").read_text())
    return subprocess.run(
        [str(python), "-S", *argv[1:]],
        cwd=tmp_path,
        # Bare, as the image sets it: settings come only from the task definition.
        env={"PYTHONPATH": str(tree.lib), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def python_module(argv: list[str]) -> str:
    assert argv[:2] == ["python", "-m"], f"not `python -m <module>`: {argv}"
    assert len(argv) >= 3, f"no module: {argv}"
    return argv[2]


def test_every_container_runs_python_m_a_module_of_its_image(
    bundled: Bundled, dockerfile: dict[str, Stage], images: dict[str, ImageTree]
) -> None:
    seen: dict[str, list[str]] = {}
    for template in regional_templates(bundled).values():
        for container in containers(template):
            target = TARGET_OF[container["Name"]]
            argv = ecs_argv(dockerfile, target, container)
            module = python_module(argv)
            package = images[target].lib / module.split(".")[0]
            assert (package / "__init__.py").is_file(), f"{module} is not in the {target} image"
            assert (package.parent / Path(*module.split("."), "__main__.py")).is_file(), argv
            seen[container["Name"]] = argv
    assert seen == {
        "edge": list(EDGE_COMMAND),
        "worker": list(WORKER_COMMAND),
        "standby": list(STANDBY_COMMAND),
    }
    # `docker run IMAGE` (no command) runs each target's own process; the default target
    # (no --target) is the edge.
    assert ecs_argv(dockerfile, "edge", {}) == list(EDGE_COMMAND)
    assert ecs_argv(dockerfile, "worker", {}) == list(WORKER_COMMAND)
    assert default_target(dockerfile) == "edge"


def test_each_task_runs_the_image_of_its_own_target(bundled: Bundled) -> None:
    # The assets manifest is what `cdk deploy` builds: each image's docker build target.
    for stack, template in regional_templates(bundled).items():
        manifest = json.loads((bundled.outdir / f"{stack}.assets.json").read_text())
        targets = {
            key: asset["source"].get("dockerBuildTarget")
            for key, asset in manifest.get("dockerImages", {}).items()
        }
        for container in containers(template):
            image = json.dumps(container["Image"])
            used = [target for key, target in targets.items() if key in image]
            assert used == [TARGET_OF[container["Name"]]], (stack, container["Name"], used)


def test_each_target_is_built_from_its_own_artifact(dockerfile: dict[str, Stage]) -> None:
    # The build stage a target copies /app/lib from runs cdk/artifacts.py for the artifact
    # of the same name (deps, then code), so the image holds exactly that artifact.
    for target in ("edge", "worker"):
        steps = artifact_steps(dockerfile, build_stage_of(dockerfile, target))
        assert [s[2] for s in steps] == [target, target], steps
        assert [s[s.index("--step") + 1] for s in steps] == ["deps", "code"], steps
        assert ARTIFACTS[target].name == target


def test_the_edge_argv_starts_the_edge(
    bundled: Bundled, dockerfile: dict[str, Stage], images: dict[str, ImageTree], tmp_path: Path
) -> None:
    for template in regional_templates(bundled).values():
        (edge,) = (c for c in containers(template) if c["Name"] == "edge")
        result = run_in_image(
            images["edge"], [*ecs_argv(dockerfile, "edge", edge), "--help"], tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert "usage: python -m grpc_edge" in result.stdout


@pytest.mark.parametrize("name", ["worker", "standby"])
def test_the_worker_argvs_start_their_workers(
    bundled: Bundled,
    dockerfile: dict[str, Stage],
    images: dict[str, ImageTree],
    tmp_path: Path,
    name: str,
) -> None:
    template = next(iter(regional_templates(bundled).values()))
    (container,) = (c for c in containers(template) if c["Name"] == name)
    argv = ecs_argv(dockerfile, "worker", container)
    # No settings: each worker's main runs and exits 2 naming what is missing (its cheap
    # mode); a wrong argv or a missing dependency would exit 1 with "No module named ...".
    result = run_in_image(images["worker"], argv, tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"ERROR {python_module(argv)} invalid configuration" in result.stderr
    assert "No module named" not in result.stderr


def test_only_the_edge_image_has_the_health_check_and_no_worker_runs_it(
    bundled: Bundled, dockerfile: dict[str, Stage], images: dict[str, ImageTree], tmp_path: Path
) -> None:
    check = last(dockerfile, "edge", "HEALTHCHECK")
    assert check is not None, "the edge target has no HEALTHCHECK"
    argv = json.loads(check[check.index("CMD") + len("CMD") :].strip())
    assert python_module(argv) == "grpc_edge.healthcheck"
    assert run_in_image(images["edge"], [*argv, "--help"], tmp_path).returncode == 0
    assert last(dockerfile, "worker", "HEALTHCHECK") is None
    # ECS runs only the health checks a container definition names and ignores the
    # image's (API_HealthCheck: "does not monitor Docker health checks that are embedded in
    # a container image"); a worker must never name the edge's probe, which would fail.
    for template in regional_templates(bundled).values():
        for container in containers(template):
            health = container.get("HealthCheck")
            if container["Name"] != "edge":
                assert health is None or "grpc_edge" not in json.dumps(health), container["Name"]


# CreateSchedule parses the schedule's zone in the edge (grpc_edge/schedules.py). The slim
# image may have no /usr/share/zoneinfo, so with PYTHONTZPATH empty a zone must come from
# the tzdata package in the image's own tree.
_EDGE_ZONE_PROBE = """
import datetime, os, sys, zoneinfo
import grpc_edge.schedules
from reportgrid.schedules import cron
if zoneinfo.TZPATH:
    sys.exit("system zone files on the path: " + repr(zoneinfo.TZPATH))
after = datetime.datetime(2026, 7, 1, tzinfo=datetime.UTC)
fire = cron.parse("0 8 * * MON", zone="Europe/Berlin", anchor=after).next_fire(after)
if fire != datetime.datetime(2026, 7, 6, 6, 0, tzinfo=datetime.UTC):
    sys.exit("wrong fire: %s" % fire)
import tzdata
if not os.path.realpath(tzdata.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep):
    sys.exit("tzdata is not the image's: " + tzdata.__file__)
"""


def test_the_edge_image_parses_schedule_time_zones_without_system_tzdata(
    images: dict[str, ImageTree], tmp_path: Path
) -> None:
    edge = images["edge"]
    argv = ["python", "-c", _EDGE_ZONE_PROBE, str(edge.lib)]
    result = run_in_image(edge, argv, tmp_path, env={"PYTHONTZPATH": ""})
    assert result.returncode == 0, result.stderr


def test_both_images_run_as_a_non_root_user_on_slim_python(dockerfile: dict[str, Stage]) -> None:
    for target in ("edge", "worker"):
        user = last(dockerfile, target, "USER")
        assert user is not None, target
        assert user.split(":")[0] not in ("root", "0"), target
        base = [s for s in dockerfile.values() if s.name == dockerfile[target].base]
        root = base[0].base if base else dockerfile[target].base
        assert re.match(r"python:\$\{PYTHON_VERSION\}-slim$", root), (target, root)


def test_a_comment_cannot_stand_in_for_an_instruction() -> None:
    # The parser reads instructions only: an ENTRYPOINT in a comment is no ENTRYPOINT.
    parsed = stages('FROM x AS a\n# ENTRYPOINT ["python", "-m"]\nCMD ["a"]\n')
    assert last(parsed, "a", "ENTRYPOINT") is None
    assert exec_form(last(parsed, "a", "CMD"), "CMD") == ["a"]


def test_each_image_holds_only_its_own_runtime_code(images: dict[str, ImageTree]) -> None:
    for target, tree in images.items():
        shipped = forbidden(tree.lib)
        assert not shipped, f"the {target} image ships what never runs in AWS: {shipped}"
        print(f"{target} image /app/lib: {footprint(tree.lib).mib:.1f} MiB")
    edge, worker = images["edge"].lib, images["worker"].lib
    # Each holds its own process's code only, and the edge validates requests without the
    # engine's DuckDB (the workers' dependency).
    assert (edge / "grpc_edge").is_dir()
    assert not (edge / "functions").exists()
    assert (worker / "functions").is_dir()
    assert not (worker / "grpc_edge").exists()
    assert not (edge / "duckdb").exists()
    assert (worker / "duckdb").is_dir()
