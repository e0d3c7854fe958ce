"""Synthesize the deployment once per session WITH Lambda bundling, so the tests judge the
artifacts a deploy would upload: the asset directories in cdk.out and the templates that
point at them.

Bundling is the app's own (cdk/bundling.py: `uv export` of uv.lock, then `uv pip install`
of manylinux wheels for the Lambda's Python); uv's cache makes repeats take seconds, and a
clean clone needs only what `make venv` installs (uv, the locked wheels, reachable once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdk.bundling import find_uv
from tests.infra.conftest import context as infra_context
from tests.infra.conftest import project_dir


@dataclass(frozen=True)
class Bundled:
    outdir: Path
    templates: dict[str, dict[str, Any]]  # stack name -> template JSON


def bundling_context() -> dict[str, Any]:
    ctx = infra_context()
    # The infra suite switches bundling off; here every stack is bundled (the default).
    ctx.pop("aws:cdk:bundling-stacks", None)
    return ctx


@pytest.fixture(scope="session")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Bundled:
    import aws_cdk as cdk

    from cdk.config import parse_config
    from cdk.deployment import build_deployment

    if find_uv() is None:
        # Without uv the CDK would fall back to Docker bundling; this suite judges the
        # local bundle the Makefile builds, so say so rather than skip.
        pytest.fail("uv is needed to bundle the Lambda asset (run `make venv`)")
    outdir = tmp_path_factory.mktemp("cdk.out.bundled")
    app = cdk.App(context=bundling_context(), outdir=str(outdir))
    deployment = build_deployment(app, parse_config(app.node.try_get_context), project_dir())
    assembly = app.synth()
    templates = {
        stack.stack_name: dict(assembly.get_stack_artifact(stack.artifact_id).template)
        for stack in deployment.stacks
    }
    return Bundled(outdir=outdir, templates=templates)


def asset_dir(outdir: Path, template: dict[str, Any], logical_id: str) -> Path:
    """The directory in cdk.out that a resource's code asset was staged to (the CDK writes
    it into the resource's `aws:asset:path` metadata)."""
    metadata = template["Resources"][logical_id].get("Metadata", {})
    path = metadata.get("aws:asset:path")
    if not path:
        raise AssertionError(
            f"{logical_id}: no aws:asset:path metadata; code is not a staged asset: "
            + json.dumps(template["Resources"][logical_id]["Properties"].get("Code"))
        )
    directory = outdir / path
    assert directory.is_dir(), f"{logical_id}: asset {directory} is missing from cdk.out"
    return directory


@dataclass(frozen=True)
class ImageTree:
    """What one Dockerfile target's image holds under /app/lib, built here by running the
    Dockerfile's own build steps (tests/artifacts/dockerfile.py) on the staged context."""

    target: str
    lib: Path


def staged_image_context(directory: Path) -> Path:
    """The Docker build context the CDK would send: the project with the image asset's
    exclude list applied (Docker ignore semantics, as DockerImageAsset uses)."""
    import aws_cdk as cdk

    from cdk.constructs.service_image import IMAGE_EXCLUDES

    cdk.FileSystem.copy_directory(
        str(project_dir()),
        str(directory),
        cdk.CopyOptions(exclude=list(IMAGE_EXCLUDES), ignore_mode=cdk.IgnoreMode.DOCKER),
    )
    return directory


@pytest.fixture(scope="session")
def image_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return staged_image_context(tmp_path_factory.mktemp("image-context"))


@pytest.fixture(scope="session")
def images(image_context: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageTree]:
    from reportgrid.local.dockerfile import stages
    from tests.artifacts.dockerfile import build_stage_of, emulate_build

    uv = find_uv()
    if uv is None:
        pytest.fail("uv is needed to build the image trees (run `make venv`)")
    all_stages = stages((image_context / "Dockerfile").read_text())
    trees = {}
    for target in ("edge", "worker"):
        workdir = tmp_path_factory.mktemp(f"image-{target}")
        build = build_stage_of(all_stages, target)
        trees[target] = ImageTree(
            target, emulate_build(all_stages, build, image_context, workdir, uv)
        )
    return trees
