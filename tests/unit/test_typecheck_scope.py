"""mypy checks exactly the aws-cdk-lib modules our code imports (pyproject.toml explains
why the others are skipped): a new import of a module not listed would be Any to mypy,
unchecked, without anyone noticing."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What `make typecheck` checks (Makefile: $(PACKAGES) cdk app.py bench).
CHECKED = ("client", "core", "edge", "workers", "devstack", "cdk", "bench", "app.py")


def _sources() -> Iterator[Path]:
    for name in CHECKED:
        path = REPO / name
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def _imported_cdk_modules() -> set[str]:
    found = {"aws_cdk"}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aws_cdk"):
                module = str(node.module)
                found.add(module)
                if module == "aws_cdk":  # `from aws_cdk import aws_iam as iam`
                    found |= {f"aws_cdk.{a.name}" for a in node.names if a.name.islower()}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("aws_cdk.")}
    return found


def _overrides() -> dict[str, list[str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    by_setting: dict[str, list[str]] = {}
    for override in config["overrides"]:
        if "follow_imports" in override:
            by_setting.setdefault(override["follow_imports"], []).extend(override["module"])
    return by_setting


def test_mypy_follows_every_cdk_module_we_import_and_skips_the_rest() -> None:
    overrides = _overrides()
    assert overrides["skip"] == ["aws_cdk.*"]
    followed = set(overrides["normal"])
    imported = _imported_cdk_modules()
    assert imported - followed == set(), "add these to pyproject's follow_imports = normal"
    assert followed - imported == set(), "nothing imports these any more: drop them"


def test_the_scan_sees_both_import_forms() -> None:
    imported = _imported_cdk_modules()
    assert "aws_cdk.aws_iam" in imported  # from aws_cdk import aws_iam as iam
    assert "aws_cdk.pipelines" in imported  # from aws_cdk import ..., pipelines
