"""Build what a Dockerfile target's image would hold without Docker: its build stages' COPY
and `cdk/artifacts.py` steps are run in order, in a scratch directory holding only what the
build context (the staged asset) and the earlier COPYs put there. So a COPY of an excluded
file, or a step that needs a file not yet copied, fails here as it would fail `docker build`.
The parse itself is the dev stack's (reportgrid/local/dockerfile.py), so the local region and
these tests read the Dockerfile the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reportgrid.local.dockerfile import ARTIFACT_SCRIPT, Stage, chain


def build_stage_of(all_stages: dict[str, Stage], target: str) -> str:
    """The stage whose /app/lib the target copies in (COPY --from=<stage> /app/lib ...)."""
    sources = [
        match[1]
        for stage in chain(all_stages, target)
        for keyword, rest in stage.steps
        if keyword == "COPY" and (match := re.match(r"--from=(\S+)\s+/app/lib\s", rest))
    ]
    assert len(sources) == 1, f"{target}: expected one COPY --from=<build> /app/lib, got {sources}"
    return sources[0]


def run_argv(rest: str) -> list[str]:
    """A RUN's first command as argv, without its --mount options (a cache for uv)."""
    return shlex.split(re.sub(r"--mount=\S+\s*", "", rest).split("&&")[0])


def artifact_steps(all_stages: dict[str, Stage], build_stage: str) -> list[list[str]]:
    """The `python cdk/artifacts.py ...` commands of a build stage's chain, as argv."""
    found = []
    for stage in chain(all_stages, build_stage):
        for keyword, rest in stage.steps:
            if keyword != "RUN" or ARTIFACT_SCRIPT not in rest:
                continue
            found.append(run_argv(rest))
    return found


def build_environment(uv: str) -> dict[str, str]:
    """This machine's environment (its package index, proxy and uv cache settings, as the
    build's network and cache mount), without the dev venv, and with uv on PATH."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    }
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return env


def emulate_build(
    all_stages: dict[str, Stage], build_stage: str, context: Path, workdir: Path, uv: str
) -> Path:
    """Run the build stage's chain here: COPY from `context` into `workdir`, and each
    `cdk/artifacts.py` RUN with this interpreter and uv, in order. Returns /app/lib."""
    lib = workdir / "app-lib"
    src = workdir / "src"
    src.mkdir(parents=True)
    for stage in chain(all_stages, build_stage):
        for keyword, rest in stage.steps:
            if keyword == "COPY" and not rest.startswith("--from"):
                *sources, destination = shlex.split(rest)
                for source in sources:
                    origin = context / source
                    if not origin.exists():
                        pytest.fail(
                            f"Dockerfile stage {stage.name}: COPY {source} is not in the build "
                            "context (the image asset's exclude list drops it)"
                        )
                    target = src / destination
                    if origin.is_dir():
                        shutil.copytree(origin, target, dirs_exist_ok=True)
                    else:
                        if destination.endswith("/") or destination in (".", "./"):
                            target = target / origin.name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(origin, target)
            elif keyword == "RUN" and ARTIFACT_SCRIPT in rest:
                command = run_argv(rest)
                assert command[:2] == ["python", ARTIFACT_SCRIPT], command
                assert command[3] == "/app/lib", command
                argv = [
                    sys.executable,
                    str(src / ARTIFACT_SCRIPT),
                    command[2],
                    str(lib),
                    *command[4:],
                ]
                result = subprocess.run(
                    argv,
                    cwd=src,
                    env=build_environment(uv),
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=600,
                )
                if result.returncode != 0:
                    pytest.fail(f"stage {stage.name}: {' '.join(command)} failed:\n{result.stderr}")
    return lib
