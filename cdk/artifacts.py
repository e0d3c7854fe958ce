"""What each deployed artifact carries, and the one way to build it.

Three artifacts run in AWS, and each is its own code plus the core and the API part of the
client distribution, and the locked third-party wheels of its own distribution only:

- `lambda`: the Lambda functions' zip (cdk/bundling.py calls this for the CDK asset);
- `edge`: the edge containers' image (the Dockerfile's `edge` target runs this script);
- `worker`: the queue worker's and the standby's image (the Dockerfile's `worker` target).

A fourth runs with the pipeline (`reportgrid:pipeline`): `canary`, the synthetic canary's
Lambda zip, a client of the service like any other: its handler, the SDK and the API part
of the client distribution, no core.

The dev stack (devstack/) and the CLI are in none of them, the SDK only in the canary's
(tests/artifacts checks the built trees). This file is run as a script inside the Docker
build, so it uses the standard library only:

    python cdk/artifacts.py edge /app/lib --step deps    # the cached layer: wheels only
    python cdk/artifacts.py edge /app/lib --step code    # then the repository's code
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The API part of the client distribution (client/reportgrid/): the generated v1 messages,
# the error classes and their gRPC status mapping, the wire constants and the webhook
# signature. The SDK
# (reportgrid/client/) and the CLI are not runtime code of any service.
API_PATHS: tuple[str, ...] = (
    "client/reportgrid/v1",
    "client/reportgrid/errors.py",
    "client/reportgrid/status.py",
    "client/reportgrid/wire.py",
    # The webhook signature format: the service signs with it, a receiver verifies with it.
    "client/reportgrid/webhooks.py",
)
CORE_PATHS: tuple[str, ...] = ("core/reportgrid",)
# Never shipped: generated caches and tests inside the packages.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", "tests")


class BundlingError(RuntimeError):
    """A bundling step failed; the message names the command."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """A deployed artifact: the workspace distribution whose locked dependencies it installs
    and the source trees it copies (each to the path below its distribution folder)."""

    name: str
    distribution: str
    sources: tuple[str, ...]

    def destination(self, source: str) -> str:
        """`workers/functions` -> `functions`; `core/reportgrid` -> `reportgrid`."""
        return source.split("/", 1)[1]


ARTIFACTS: dict[str, Artifact] = {
    "lambda": Artifact(
        "lambda", "reportgrid-workers", ("workers/functions", *CORE_PATHS, *API_PATHS)
    ),
    "worker": Artifact(
        "worker", "reportgrid-workers", ("workers/functions", *CORE_PATHS, *API_PATHS)
    ),
    "edge": Artifact("edge", "reportgrid-edge", ("edge/grpc_edge", *CORE_PATHS, *API_PATHS)),
    # Its handler is a function of the workers' distribution (whose locked wheels include
    # the client's: grpcio, protobuf); only the canary package of it is copied.
    "canary": Artifact(
        "canary",
        "reportgrid-workers",
        (
            "workers/functions/__init__.py",
            "workers/functions/canary",
            "client/reportgrid/client",
            *API_PATHS,
        ),
    ),
}
# What the dependency export must read: the lock and every workspace member's metadata.
WORKSPACE_FILES: tuple[str, ...] = (
    "pyproject.toml",
    "uv.lock",
    "client/pyproject.toml",
    "core/pyproject.toml",
    "edge/pyproject.toml",
    "workers/pyproject.toml",
    "devstack/pyproject.toml",
)


@dataclass(frozen=True, slots=True)
class Target:
    """The interpreter the wheels are for: None installs for this machine's Python."""

    python_version: str | None = None
    platform: str | None = None


def export_command(uv: str, artifact: Artifact, requirements: Path, project_dir: Path) -> list[str]:
    """The locked third-party requirements of the artifact's distribution: no dependency
    groups and no workspace members (their code is copied, not installed)."""
    return [
        uv,
        "export",
        "--frozen",
        "--package",
        artifact.distribution,
        "--no-default-groups",
        "--no-emit-workspace",
        "--no-hashes",
        "--format",
        "requirements-txt",
        "--output-file",
        str(requirements),
        "--directory",
        str(project_dir),
    ]


def install_command(uv: str, requirements: Path, output_dir: Path, target: Target) -> list[str]:
    command = [uv, "pip", "install", "--no-config", "--target", str(output_dir)]
    if target.python_version:
        command += ["--python-version", target.python_version]
    if target.platform:
        command += ["--python-platform", target.platform]
    else:
        command += ["--python", sys.executable]
    return [*command, "--only-binary", ":all:", "--requirements", str(requirements)]


def find_uv() -> str | None:
    """uv on PATH, next to this interpreter, or where the Makefile installs it."""
    for candidate in (
        shutil.which("uv"),
        str(Path(sys.executable).with_name("uv")),
        str(PROJECT_DIR / ".tools" / "bin" / "uv"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _run(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundlingError(f"{' '.join(command[:3])} failed: {result.stderr.strip()[-2000:]}")


def install_dependencies(
    artifact: Artifact, output_dir: Path, target: Target, *, uv: str, project_dir: Path
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        requirements = Path(scratch) / "requirements.txt"
        _run(export_command(uv, artifact, requirements, project_dir))
        _run(install_command(uv, requirements, output_dir, target))


def copy_code(artifact: Artifact, output_dir: Path, *, project_dir: Path) -> None:
    for source in artifact.sources:
        origin = project_dir / source
        if not origin.exists():
            raise BundlingError(f"{origin} is missing: the {artifact.name} artifact needs it")
        destination = output_dir / artifact.destination(source)
        if origin.is_dir():
            shutil.copytree(origin, destination, ignore=_IGNORED, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination)


def build(
    artifact: Artifact,
    output_dir: Path,
    target: Target = Target(),
    *,
    uv: str,
    project_dir: Path = PROJECT_DIR,
    steps: Sequence[str] = ("deps", "code"),
) -> None:
    """Install the artifact's locked wheels, then copy its code, into `output_dir`."""
    if "deps" in steps:
        install_dependencies(artifact, output_dir, target, uv=uv, project_dir=project_dir)
    if "code" in steps:
        copy_code(artifact, output_dir, project_dir=project_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("artifact", choices=sorted(ARTIFACTS))
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--step", choices=("deps", "code"), action="append")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    args = parser.parse_args(argv)
    uv = find_uv()
    if uv is None:
        print("error: uv is not installed (pip install uv)", file=sys.stderr)
        return 2
    try:
        build(
            ARTIFACTS[args.artifact],
            args.output_dir,
            uv=uv,
            project_dir=args.project_dir,
            steps=args.step or ("deps", "code"),
        )
    except (BundlingError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
