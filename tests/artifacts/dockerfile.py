"""Read the Dockerfile as Docker does, and build what a target's image would hold without
Docker: its build stages' COPY and `cdk/artifacts.py` steps are run in order, in a scratch
directory holding only what the build context (the staged asset) and the earlier COPYs put
there. So a COPY of an excluded file, or a step that needs a file not yet copied, fails here
as it would fail `docker build`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ARTIFACT_SCRIPT = "cdk/artifacts.py"


@dataclass
class Stage:
    name: str
    base: str  # the FROM image or the name of an earlier stage
    steps: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) in order: comments and blank lines dropped, continuation lines
    joined, as the Dockerfile parser reads them (a comment is never an instruction)."""
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
    return steps


def stages(text: str) -> dict[str, Stage]:
    """Every build stage by name (`FROM image AS name`; unnamed stages by index), in order.
    ARGs before the first FROM are global and dropped."""
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(found))
            current = found[name] = Stage(name=name, base=parts[0])
        elif current is not None:
            current.steps.append((keyword, rest))
    return found


def chain(all_stages: dict[str, Stage], target: str) -> list[Stage]:
    """The target stage and the stages it is built FROM, base first."""
    if target not in all_stages:
        pytest.fail(f"the Dockerfile has no stage {target!r} (stages: {sorted(all_stages)})")
    found: list[Stage] = []
    name: str | None = target
    while name in all_stages:
        found.insert(0, all_stages[name])
        name = all_stages[name].base
    return found


def last(all_stages: dict[str, Stage], target: str, keyword: str) -> str | None:
    """The value of the last `keyword` in the target's chain (ENTRYPOINT, CMD, USER,
    HEALTHCHECK are inherited from a base stage unless set again)."""
    values = [
        rest for stage in chain(all_stages, target) for k, rest in stage.steps if k == keyword
    ]
    return values[-1] if values else None


def exec_form(value: str | None, keyword: str) -> list[str] | None:
    """An exec-form value as argv (None if absent). A shell-form value fails: ECS would wrap
    it in /bin/sh -c, and SIGTERM would stop at the shell instead of reaching python."""
    if value is None:
        return None
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        pytest.fail(f"Dockerfile {keyword} {value!r} is not exec form (a JSON array)")
    assert isinstance(argv, list)
    assert all(isinstance(a, str) for a in argv)
    return argv


def default_target(all_stages: dict[str, Stage]) -> str:
    """`docker build` without --target builds the last stage."""
    return list(all_stages)[-1]


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


def artifact_steps(all_stages: dict[str, Stage], build_stage: str) -> list[list[str]]:
    """The `python cdk/artifacts.py ...` commands of a build stage's chain, as argv."""
    found = []
    for stage in chain(all_stages, build_stage):
        for keyword, rest in stage.steps:
            if keyword != "RUN" or ARTIFACT_SCRIPT not in rest:
                continue
            command = re.sub(r"--mount=\S+\s*", "", rest).split("&&")[0]
            found.append(shlex.split(command))
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
                command = shlex.split(re.sub(r"--mount=\S+\s*", "", rest).split("&&")[0])
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
