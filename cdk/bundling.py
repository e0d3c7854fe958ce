"""Bundle the Lambda code on this machine, without Docker.

An asset is an artifact of cdk/artifacts.py: `lambda` (the workers' code, the core and the
client's API modules) or `canary` (the synthetic canary and the SDK it drives), plus the
locked third-party wheels of the workers' distribution,
installed as manylinux wheels for the Lambda's Python and CPU (never built here, so a Mac or
an arm laptop produces the same zip). `uv export` reads uv.lock, so the Lambda runs exactly
the versions the tests ran.

Synth in tests skips bundling with the CDK's own switch, the context key
`aws:cdk:bundling-stacks` = [] (see tests/infra/conftest.py); `cdk synth --exclusively` and
`cdk deploy Stack` bundle only the stacks they touch.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import jsii

from cdk import artifacts
from cdk.artifacts import ARTIFACTS, Artifact, BundlingError, Target, find_uv

__all__ = ["BundlingError", "find_uv"]

# The Lambda runtime and the wheels must match: Python 3.12 on x86_64.
LAMBDA_PYTHON_VERSION = "3.12"
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34): wheels tagged up to
# manylinux_2_34 run there (duckdb 2 ships no manylinux2014 wheel).
WHEEL_PLATFORM = "x86_64-manylinux_2_34"
LAMBDA_TARGET = Target(python_version=LAMBDA_PYTHON_VERSION, platform=WHEEL_PLATFORM)
LAMBDA_ARTIFACT = ARTIFACTS["lambda"]


def bundle_lambda(
    output_dir: Path, *, uv: str, project_dir: Path, artifact: Artifact = LAMBDA_ARTIFACT
) -> None:
    artifacts.build(artifact, output_dir, LAMBDA_TARGET, uv=uv, project_dir=project_dir)


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundling:
    """CDK's local-bundling hook: bundle here when uv is available, else say no (the CDK
    then falls back to the Docker command of the asset's BundlingOptions)."""

    def __init__(self, project_dir: Path, artifact: Artifact = LAMBDA_ARTIFACT) -> None:
        self._project_dir = project_dir
        self._artifact = artifact

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_options: object) -> bool:
        uv = find_uv()
        if uv is None:
            return False
        bundle_lambda(
            Path(output_dir), uv=uv, project_dir=self._project_dir, artifact=self._artifact
        )
        return True


def docker_fallback_command(artifact: Artifact = LAMBDA_ARTIFACT) -> list[str]:
    """Runs in the Lambda build image when uv is not installed: the same script, with uv
    installed from PyPI first (the image has Python 3.12 and pip)."""
    return [
        "bash",
        "-c",
        f"pip install --no-cache-dir uv && python /asset-input/cdk/artifacts.py {artifact.name}"
        " /asset-output --project-dir /asset-input",
    ]
