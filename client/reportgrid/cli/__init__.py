"""`reportgrid`: the command line for Reportgrid (the commands are in `commands`).

The console script's entry point imports the commands only when it runs, so an install
without the `cli` extra (no typer, no rich) still imports everything else and the command
says in one line what to install instead of showing a traceback.
"""

from __future__ import annotations

import sys
from typing import Final

from reportgrid.cli.exit_codes import Exit

# What the `cli` extra adds (client/pyproject.toml); any other missing module is a defect.
CLI_EXTRA_MODULES: Final = frozenset({"typer", "rich"})
INSTALL_HINT: Final = "pip install 'reportgrid[cli]'"


def main() -> None:
    """The `reportgrid` console script."""
    try:
        from reportgrid.cli.commands import app  # noqa: PLC0415 -- see the module docstring
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] not in CLI_EXTRA_MODULES:
            raise
        print(
            f"reportgrid: the command line needs the `cli` extra ({missing.name} is not "
            f"installed): {INSTALL_HINT}",
            file=sys.stderr,
        )
        sys.exit(Exit.USAGE)
    app()
