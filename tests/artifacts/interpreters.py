"""The real interpreters the deployed artifacts run under (a Lambda runtime's Python, the
image's Python), found on this machine so a test can run an artifact under its own version."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def python_interpreter(major: int, minor: int) -> Path:
    """The real interpreter for a pythonX.Y runtime: pyenv's build, or one on PATH (a pyenv
    shim is resolved to the binary it runs, so a bare environment still finds it)."""
    name = f"python{major}.{minor}"
    candidates: list[Path] = []
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(
        (pyenv_root / "versions").glob(f"{major}.{minor}.*/bin/{name}"), reverse=True
    )
    candidates += [Path(p) for p in (shutil.which(name), f"/usr/bin/{name}") if p]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print(sys.executable, *sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        parts = probe.stdout.split()
        if probe.returncode == 0 and parts[1:] == [str(major), str(minor)]:
            return Path(parts[0])
    pytest.fail(
        f"no {name} interpreter found (looked in {pyenv_root}/versions and on PATH): the "
        f"Lambda runtime {name} must be importable-tested under its own Python; install "
        f"it (pyenv install {major}.{minor}) or move the runtime and cdk.bundling together"
    )
