"""The edge's module boundaries, read from the source: the interceptors do not depend on the
service they wrap, and no edge module needs the dev-only type stubs at runtime (the edge
image does not have them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grpc_edge

PACKAGE = Path(grpc_edge.__file__).resolve().parent


def edge_imports(module: str) -> set[str]:
    """The grpc_edge modules `module` imports directly (type-checking imports included)."""
    tree = ast.parse((PACKAGE / f"{module.removeprefix('grpc_edge.')}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package itself
                base = f"grpc_edge.{base}".rstrip(".")
            found.add(base)
            # `from grpc_edge import service` names a module, not an attribute
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {
        name
        for name in found
        if name.startswith("grpc_edge.")
        and (PACKAGE / f"{name.removeprefix('grpc_edge.')}.py").exists()
    }


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += edge_imports(module) - seen
    return seen


def test_the_interceptors_do_not_reach_the_service_module() -> None:
    # Directly or through any module they import: the chain wraps handlers it is given.
    assert "grpc_edge.call" in reachable("grpc_edge.interceptors")  # the walk sees imports
    assert "grpc_edge.service" not in reachable("grpc_edge.interceptors")


def test_no_edge_module_imports_the_type_stubs_at_runtime() -> None:
    # Given the stub packages made unimportable, as in the edge image
    code = """
import importlib, pkgutil, sys
import grpc_edge

STUBS = ("types_aiobotocore", "mypy_boto3", "aioboto3-stubs", "aiobotocore-stubs")

class NoStubs:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(STUBS):
            raise ImportError(f"{name} is a dev-only stub package")
        return None

sys.meta_path.insert(0, NoStubs())
# When every edge module is imported
for info in pkgutil.iter_modules(grpc_edge.__path__):
    if info.name != "__main__":
        importlib.import_module(f"grpc_edge.{info.name}")
# Then none of them needed a stub package
assert not [m for m in sys.modules if m.startswith(STUBS)], "a stub module was imported"
"""
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
