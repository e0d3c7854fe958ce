"""Bundle the Lambda code on this machine, without Docker.

The asset is `functions/` + `reportgrid/` plus the locked runtime dependencies, installed as
manylinux wheels for the Lambda's Python and CPU (never built here, so a Mac or an arm
laptop produces the same zip). `uv export` reads uv.lock, so the Lambda runs exactly the
versions the tests ran.

Synth in tests skips bundling with the CDK's own switch, the context key
`aws:cdk:bundling-stacks` = [] (see tests/infra/conftest.py); `cdk synth --exclusively` and
`cdk deploy Stack` bundle only the stacks they touch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import jsii

# The Lambda runtime and the wheels must match: Python 3.12 on x86_64.
LAMBDA_PYTHON_VERSION = "3.12"
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34): wheels tagged up to
# manylinux_2_34 run there (duckdb 2 ships no manylinux2014 wheel).
WHEEL_PLATFORM = "x86_64-manylinux_2_34"
# What the Lambda zip carries from the repository (packages, copied whole).
CODE_PACKAGES: tuple[str, ...] = ("functions", "reportgrid")
# Never shipped: generated caches and tests inside the packages.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", "tests")


class BundlingError(RuntimeError):
    """A bundling step failed; the message names the command."""


@dataclass(frozen=True, slots=True)
class BundlePlan:
    """The commands a bundle runs, kept apart from running them so a test can read them."""

    uv: str
    project_dir: Path
    output_dir: Path

    @property
    def requirements(self) -> Path:
        return self.output_dir / "requirements.txt"

    def export_command(self) -> list[str]:
        # Runtime dependencies only: no dev/cdk/bench groups and not the project itself
        # (its packages are copied below).
        return [
            self.uv,
            "export",
            "--frozen",
            "--no-default-groups",
            "--no-emit-project",
            "--no-hashes",
            "--format",
            "requirements-txt",
            "--output-file",
            str(self.requirements),
            "--directory",
            str(self.project_dir),
        ]

    def install_command(self) -> list[str]:
        return [
            self.uv,
            "pip",
            "install",
            "--no-config",
            "--target",
            str(self.output_dir),
            "--python-version",
            LAMBDA_PYTHON_VERSION,
            "--python-platform",
            WHEEL_PLATFORM,
            "--only-binary",
            ":all:",
            "--requirements",
            str(self.requirements),
        ]


def find_uv() -> str | None:
    """uv on PATH, next to this interpreter, or where the Makefile installs it."""
    for candidate in (
        shutil.which("uv"),
        str(Path(sys.executable).with_name("uv")),
        str(Path(__file__).resolve().parent.parent / ".tools" / "bin" / "uv"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _run(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundlingError(f"{' '.join(command[:3])} failed: {result.stderr.strip()[-2000:]}")


def bundle(plan: BundlePlan, packages: Sequence[str] = CODE_PACKAGES) -> None:
    """Install the locked dependencies and copy the code packages into the output."""
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    _run(plan.export_command())
    _run(plan.install_command())
    plan.requirements.unlink()
    for package in packages:
        shutil.copytree(
            plan.project_dir / package,
            plan.output_dir / package,
            ignore=_IGNORED,
            dirs_exist_ok=True,
        )


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundling:
    """CDK's local-bundling hook: bundle here when uv is available, else say no (the CDK
    then falls back to the Docker command of the asset's BundlingOptions)."""

    def __init__(self, project_dir: Path) -> None:
        self._project_dir = project_dir

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_options: object) -> bool:
        uv = find_uv()
        if uv is None:
            return False
        bundle(BundlePlan(uv=uv, project_dir=self._project_dir, output_dir=Path(output_dir)))
        return True


def docker_fallback_command() -> list[str]:
    """Runs in the Lambda build image when uv is not installed: the same packages, with the
    project's declared (not locked) dependencies."""
    copies = " && ".join(f"cp -r /asset-input/{p} /asset-output/{p}" for p in CODE_PACKAGES)
    return [
        "bash",
        "-c",
        "pip install --no-cache-dir --target /asset-output /asset-input"
        f" && rm -rf /asset-output/{{{','.join(CODE_PACKAGES)}}} && {copies}",
    ]
