"""The real interpreters the deployed artifacts run under (a Lambda runtime's Python, the
image's Python), found on this machine so the local region and the tests run each artifact
under its own version."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path


class InterpreterNotFound(RuntimeError):
    """No pythonX.Y on this machine; the message says where it looked and what to do."""


@functools.cache
def find_python(major: int, minor: int) -> Path:
    """pyenv's build of pythonX.Y, or one on PATH (a pyenv shim is resolved to the binary it
    runs, so a bare environment still finds it)."""
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
    raise InterpreterNotFound(
        f"no {name} interpreter found (looked in {pyenv_root}/versions and on PATH): the "
        f"deployed code runs under {name}, so it runs under it here too; install it "
        f"(pyenv install {major}.{minor}) or move the runtime and cdk.bundling together"
    )
