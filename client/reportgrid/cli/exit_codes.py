"""The exit codes of every `reportgrid` command (docs/USAGE.md lists them)."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """The exit codes of every command."""

    OK = 0
    REPORT_NOT_SUCCEEDED = 1  # the report ended FAILED, CANCELLED or EXPIRED
    USAGE = 2  # bad options, an invalid argument (INVALID_ARGUMENT), no `cli` extra
    NOT_FOUND = 3
    UNAUTHENTICATED = 4  # also PERMISSION_DENIED: a disabled tenant's key
    UNAVAILABLE = 5  # the server could not be reached, or a deadline ran out
    PRECONDITION = 6  # FAILED_PRECONDITION or ABORTED: the report's state does not allow it
    RESOURCE_EXHAUSTED = 7  # rate limited; retry later
    CHECKSUM = 8  # downloaded bytes did not match the result's SHA-256
    INTERNAL = 9  # a defect on the server (or in this tool)
    IDEMPOTENCY_KEY_REUSED = 10  # the key already stands for a report of another request
    INTERRUPTED = 130  # Ctrl-C
