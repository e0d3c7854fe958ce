"""The client distribution as a client developer installs it: `./client[cli]` (and `./client`
alone) into a clean venv, at the lock's versions. What it contains is the SDK, the CLI and
their locked dependencies: no server code and none of the server's dependencies.

Each venv is built once per module with uv from its cache (`make venv` filled it from the
same lock); only when the cache lacks something is the package registry asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cdk.artifacts import PROJECT_DIR, find_uv
from reportgrid.local.servers import free_port

# The server's own code: none of it may be importable from a client install.
SERVER_MODULES = (
    "reportgrid.ids",
    "reportgrid.resources",
    "reportgrid.settings",
    "reportgrid.engine",
    "reportgrid.task",
    "reportgrid.local",
    "grpc_edge",
    "functions",
)
# Dependencies of the server distributions only (import names).
SERVER_DEPENDENCIES = ("duckdb", "boto3", "botocore", "aioboto3", "aws_lambda_powertools", "moto")
INSTALL_HINT = "pip install 'reportgrid[cli]'"
VERSION = tomllib.loads((PROJECT_DIR / "client" / "pyproject.toml").read_text())["project"][
    "version"
]

# Runs in the venv's interpreter, isolated (-I: no PYTHONPATH, no cwd on sys.path).
_PROBE = """
import importlib.metadata, importlib.util, json, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False
print(json.dumps({
    "found": {name: found(name) for name in sys.argv[1:]},
    "installed": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
}))
"""


@dataclass(frozen=True)
class Venv:
    path: Path
    locked: dict[str, str]  # distribution -> version the lock pins for this install
    found: dict[str, bool]  # module -> importable
    installed: dict[str, str]  # distribution -> version

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(self, *argv: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            cwd=self.path,
            env=_clean_env(),
        )


def _clean_env() -> dict[str, str]:
    """This environment without what would point a process at the dev venv or the tree."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    return {k: v for k, v in os.environ.items() if k not in dropped}


def _uv(uv: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [uv, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**_clean_env(), "UV_PYTHON_DOWNLOADS": "never"},
    )


def _locked(uv: str, *extras: str) -> dict[str, str]:
    """The lock's pins for `reportgrid` with these extras, for this platform."""
    args = [f"--extra={extra}" for extra in extras]
    export = _uv(
        uv,
        "export",
        "--frozen",
        "--package=reportgrid",
        "--no-default-groups",
        "--no-emit-workspace",
        "--no-hashes",
        "--format=requirements-txt",
        f"--directory={PROJECT_DIR}",
        *args,
    )
    assert export.returncode == 0, export.stderr
    pins = {}
    for line in export.stdout.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def build_venv(directory: Path, *extras: str) -> Venv:
    """A clean venv on this interpreter with `./client[extras]` at the lock's versions."""
    uv = find_uv()
    if uv is None:
        pytest.fail("uv is needed to build the client venv (run `make venv`)")
    locked = _locked(uv, *extras)
    constraints = directory / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in locked.items()))
    venv = directory / "venv"
    created = _uv(uv, "venv", "--python", sys.executable, venv)
    assert created.returncode == 0, created.stderr
    requirement = str(PROJECT_DIR / "client") + (f"[{','.join(extras)}]" if extras else "")
    install = ["pip", "install", "--python", venv / "bin" / "python"]
    install += ["--constraints", constraints, requirement]
    result = _uv(uv, *install, "--offline")
    if result.returncode != 0:  # the cache lacks something: ask the registry
        result = _uv(uv, *install)
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [venv / "bin" / "python", "-I", "-c", _PROBE, *SERVER_MODULES, *SERVER_DEPENDENCIES],
        capture_output=True,
        text=True,
        check=True,
        cwd=venv,
        env=_clean_env(),
    )
    report: dict[str, Any] = json.loads(probe.stdout)
    installed = {canonicalize_name(n): v for n, v in report["installed"].items()}
    return Venv(venv, locked, report["found"], installed)


@pytest.fixture(scope="module")
def with_cli(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return build_venv(tmp_path_factory.mktemp("client-cli"), "cli")


@pytest.fixture(scope="module")
def sdk_only(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return build_venv(tmp_path_factory.mktemp("client-sdk"))


def test_the_cli_install_is_the_locked_closure_of_the_client_and_its_cli_extra(
    with_cli: Venv,
) -> None:
    assert with_cli.installed == {**with_cli.locked, "reportgrid": VERSION}
    assert {"typer", "rich"} <= with_cli.installed.keys()


def test_the_sdk_install_is_the_locked_closure_of_the_client_alone(sdk_only: Venv) -> None:
    assert sdk_only.installed == {**sdk_only.locked, "reportgrid": VERSION}
    # No CLI, and none of what only the CLI or the server brings
    assert not {"typer", "rich", "pydantic"} & sdk_only.installed.keys()


@pytest.mark.parametrize("module", [*SERVER_MODULES, *SERVER_DEPENDENCIES])
def test_no_server_code_or_server_dependency_is_importable(
    with_cli: Venv, sdk_only: Venv, module: str
) -> None:
    assert not with_cli.found[module]
    assert not sdk_only.found[module]


def test_the_sdk_and_the_cli_import_from_the_installed_wheel(with_cli: Venv) -> None:
    imported = with_cli.run(
        with_cli.python,
        "-I",
        "-c",
        "import reportgrid.client, reportgrid.cli, reportgrid.cli.commands\n"
        "print(reportgrid.client.__file__)",
    )
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()).is_relative_to(with_cli.path)  # not the source tree


def test_the_reportgrid_command_runs_and_reaches_the_sdk(with_cli: Venv) -> None:
    command = with_cli.path / "bin" / "reportgrid"
    helped = with_cli.run(command, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "submit" in helped.stdout
    # The generated blocking client is in the wheel: a call to a closed port is UNAVAILABLE
    dead = f"127.0.0.1:{free_port()}"
    called = with_cli.run(command, "kinds", "--endpoint", dead, "--timeout", "2")
    assert called.returncode == 5, called.stderr  # Exit.UNAVAILABLE
    assert "UNAVAILABLE" in called.stderr


def test_the_sdk_alone_imports_and_the_command_says_what_to_install(sdk_only: Venv) -> None:
    imported = sdk_only.run(sdk_only.python, "-I", "-c", "import reportgrid.client, reportgrid.cli")
    assert imported.returncode == 0, imported.stderr
    ran = sdk_only.run(sdk_only.path / "bin" / "reportgrid", "--help")
    assert ran.returncode == 2  # Exit.USAGE
    assert ran.stdout == ""
    assert "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    assert INSTALL_HINT in ran.stderr
