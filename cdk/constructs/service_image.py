"""The container images of the repository's Dockerfile: target `edge` (the gRPC edge) and
target `worker` (the queue worker and the standby), each built by cdk/artifacts.py."""

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
    # Only on a developer's machine (its pyproject.toml is kept: the lock names it).
    "devstack/reportgrid",
    ".reportgrid",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".ci",
    # The infrastructure code: editing it must not change the image (and redeploy tasks);
    # only the artifact script the build runs is sent.
    "cdk",
    "!cdk/artifacts.py",
    "cdk.json",
    "app.py",
    "**/__pycache__",
    "**/*.pyc",
)


class ServiceImage(Construct):
    """Built from `directory`/Dockerfile's `target` stage for linux/amd64; the task
    definition's command picks the process."""

    def __init__(self, scope: Construct, id_: str, *, directory: Path, target: str) -> None:
        super().__init__(scope, id_)
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=str(directory),
            target=target,
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=list(IMAGE_EXCLUDES),
        )
        self.image = ecs.ContainerImage.from_docker_image_asset(self.asset)
