"""The interpreters the deployed artifacts run under, for the tests (a missing one fails the
test with the dev stack's message, never skips it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgrid.local.interpreters import InterpreterNotFound, find_python


def python_interpreter(major: int, minor: int) -> Path:
    try:
        return find_python(major, minor)
    except InterpreterNotFound as error:
        pytest.fail(str(error))
