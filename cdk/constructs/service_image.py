"""The one container image (the repository's Dockerfile) that runs the edge and the worker."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from constructs import Construct

# Never sent to the Docker build context: environments, build output, local state, tests.
# (.venv alone is hundreds of MB; synth only stages files, but staging it would be slow.)
IMAGE_EXCLUDES: tuple[str, ...] = (
    ".venv",
    ".tools",
    ".git",
    "cdk.out",
    "tests",
    "bench",
    "docs",
    ".reportgrid",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".ci",
    # The infrastructure code: editing it must not change the image (and redeploy tasks).
    "cdk",
    "cdk.json",
    "app.py",
    "**/__pycache__",
    "**/*.pyc",
)


class ServiceImage(Construct):
    """Built from `directory`/Dockerfile for linux/amd64; the command picks the process."""

    def __init__(self, scope: Construct, id_: str, *, directory: Path) -> None:
        super().__init__(scope, id_)
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=str(directory),
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=list(IMAGE_EXCLUDES),
        )
        self.image = ecs.ContainerImage.from_docker_image_asset(self.asset)
