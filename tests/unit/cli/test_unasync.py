"""The blocking client is generated from the asyncio one (client/unasync.py): the committed
`_sync/` is exactly what the generator writes, and its `--check` names a stale file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cdk.artifacts import PROJECT_DIR

GENERATOR = PROJECT_DIR / "client" / "unasync.py"
PACKAGE = Path("client/reportgrid/client")
GENERATED = PACKAGE / "_sync" / "client.py"


def run_generator(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def copy_of_the_sdk(tmp_path: Path) -> Path:
    """The two flavours' folders and the ruff settings, in a scratch root."""
    shutil.copy(PROJECT_DIR / "pyproject.toml", tmp_path / "pyproject.toml")
    for flavour in ("_async", "_sync"):
        shutil.copytree(
            PROJECT_DIR / PACKAGE / flavour,
            tmp_path / PACKAGE / flavour,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    return tmp_path


def test_the_committed_sync_client_is_the_generated_one() -> None:
    result = run_generator(PROJECT_DIR, "--check")
    assert result.returncode == 0, result.stderr


def test_the_check_names_a_hand_edited_generated_file(tmp_path: Path) -> None:
    root = copy_of_the_sdk(tmp_path)
    assert run_generator(root, "--check").returncode == 0  # the copy alone is not stale
    # Given a hand edit of the generated client
    generated = root / GENERATED
    generated.write_text(
        generated.read_text().replace("poll_interval: float = 1.0", "poll_interval: float = 5.0")
    )
    # When the check runs
    result = run_generator(root, "--check")
    # Then it fails, naming the file and showing the edited line
    assert result.returncode == 1
    assert f"{GENERATED.as_posix()} is stale" in result.stderr
    assert "-        poll_interval: float = 5.0," in result.stderr


def test_the_check_names_a_generated_file_without_a_source(tmp_path: Path) -> None:
    root = copy_of_the_sdk(tmp_path)
    orphan = root / PACKAGE / "_sync" / "retired.py"
    orphan.write_text('"""Once generated from _async/retired.py."""\n')
    result = run_generator(root, "--check")
    assert result.returncode == 1
    assert "_sync/retired.py has no source in _async/" in result.stderr


def test_generating_writes_the_committed_file_and_removes_orphans(tmp_path: Path) -> None:
    root = copy_of_the_sdk(tmp_path)
    (root / GENERATED).unlink()
    orphan = root / PACKAGE / "_sync" / "retired.py"
    orphan.write_text("")
    result = run_generator(root)
    assert result.returncode == 0, result.stderr
    assert (root / GENERATED).read_text() == (PROJECT_DIR / GENERATED).read_text()
    assert not orphan.exists()
    assert run_generator(root, "--check").returncode == 0


def test_a_substitution_that_matches_nothing_fails_the_run(tmp_path: Path) -> None:
    # The list of substitutions stays exactly what the async code needs
    root = copy_of_the_sdk(tmp_path)
    source = root / PACKAGE / "_async" / "client.py"
    source.write_text(source.read_text().replace("import asyncio\n", ""))
    result = run_generator(root, "--check")
    assert result.returncode == 1
    assert "substitutions that matched nothing" in result.stderr
    assert "import asyncio" in result.stderr
