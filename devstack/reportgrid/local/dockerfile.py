"""Read the Dockerfile as Docker does: its stages, and what a target inherits (ENTRYPOINT,
CMD, USER, HEALTHCHECK). The local region takes a container's image argv from here, and
tests/artifacts builds the image trees from the same parse."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

ARTIFACT_SCRIPT = "cdk/artifacts.py"


class DockerfileError(ValueError):
    """The Dockerfile lacks what is asked of it; the message says what."""


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
        raise DockerfileError(
            f"the Dockerfile has no stage {target!r} (stages: {sorted(all_stages)})"
        )
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
        argv = None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise DockerfileError(f"Dockerfile {keyword} {value!r} is not exec form (a JSON array)")
    return [str(a) for a in argv]


def default_target(all_stages: dict[str, Stage]) -> str:
    """`docker build` without --target builds the last stage."""
    return list(all_stages)[-1]
