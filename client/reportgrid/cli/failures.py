"""How a command fails: one line on stderr and the exit code of the error's kind
(exit_codes.py), never a traceback. The client commands and `reportgrid admin` word their
lines differently (`describe`), and fail alike otherwise."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from reportgrid import errors
from reportgrid.cli.exit_codes import Exit

P = ParamSpec("P")
R = TypeVar("R")
Describe = Callable[[errors.ReportgridError], tuple[Exit, str]]

err = Console(stderr=True, highlight=False, soft_wrap=True)


def handled(describe: Describe) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator that turns domain errors into `describe`'s line and exit code."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except errors.ReportgridError as error:
                code, line = describe(error)
                err.print(line, markup=False)
                raise typer.Exit(code) from None
            except BrokenPipeError:  # `reportgrid list | head`: the reader has what it wanted
                sys.stderr.close()
                raise typer.Exit(Exit.OK) from None
            except OSError as error:  # an unreadable input file, an unwritable --out
                where = f": {error.filename}" if error.filename else ""
                err.print(f"error: {error.strerror or error}{where}", markup=False)
                raise typer.Exit(Exit.USAGE) from None
            except KeyboardInterrupt:
                err.print("interrupted")
                raise typer.Exit(Exit.INTERRUPTED) from None

        return wrapper

    return decorate
