"""The one error hierarchy. Every layer raises these; `reportgrid.status` maps them to gRPC
status codes with google.rpc details, and the SDK maps statuses back to them.

Messages are written for the caller: they name the field or resource and say what to fix,
and never carry exception text from below.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class ReportgridError(Exception):
    """Base of every error Reportgrid raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request (proto field names) and what is wrong."""

    field: str
    description: str


class InvalidArgument(ReportgridError):
    """The request is malformed; each violation names a field."""

    def __init__(self, violations: Iterable[FieldViolation] | FieldViolation) -> None:
        self.violations = (
            (violations,) if isinstance(violations, FieldViolation) else tuple(violations)
        )
        if not self.violations:
            raise ValueError("InvalidArgument needs at least one violation")
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(field, description))


class NotFound(ReportgridError):
    """No such resource for this caller. Also raised for forged and foreign ids, so that a
    caller cannot tell them from missing ones."""

    def __init__(self, resource_type: str, resource_name: str) -> None:
        super().__init__(f"{resource_type} {resource_name!r} was not found")
        self.resource_type = resource_type
        self.resource_name = resource_name


class FailedPrecondition(ReportgridError):
    """The resource is not in a state that allows the call."""

    def __init__(self, subject: str, description: str, *, type_: str = "STATE") -> None:
        super().__init__(description)
        self.subject = subject
        self.type = type_


class IllegalTransition(FailedPrecondition):
    """A state change the state machine does not allow."""

    def __init__(self, subject: str, current: str | None, target: str) -> None:
        super().__init__(subject, f"a report in state {current or 'NONE'} cannot become {target}")
        self.current = current
        self.target = target


class Conflict(ReportgridError):
    """A concurrent change won the race (a conditional write failed); retry the call."""


class Unauthenticated(ReportgridError):
    """Missing, malformed, unknown or revoked credentials."""


class ResourceExhausted(ReportgridError):
    """Over a limit; `retry_after` says when to try again."""

    def __init__(self, message: str, *, retry_after: float, subject: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.subject = subject


class Unavailable(ReportgridError):
    """A dependency did not answer in time. Nothing was acknowledged; retrying is safe."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(ReportgridError):
    """The caller's deadline ran out before the work was done."""


class Internal(ReportgridError):
    """A defect on our side. The message shown to callers is generic."""


class SettingsError(ReportgridError):
    """The environment does not describe a valid configuration."""


class ReportFailure(ReportgridError):
    """A report cannot be produced from what the user gave: it ends FAILED with this reason
    and message, and is never retried."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
