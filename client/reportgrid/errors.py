"""The one error hierarchy. Every layer raises these; `reportgrid.status` maps them to gRPC
status codes with google.rpc details, and the SDK maps statuses back to them.

Messages are written for the caller: they name the field or resource and say what to fix,
and never carry exception text from below.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reportgrid.wire import MAX_ERROR_MESSAGE_BYTES

_ELLIPSIS = "…"


def bounded(text: str, limit: int = MAX_ERROR_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (on a character boundary, marked with an
    ellipsis): a message is stored in the report item and sent in gRPC trailers, both of
    which have hard size limits."""
    data = text.encode()
    if len(data) <= limit:
        return text
    room = limit - len(_ELLIPSIS.encode())
    return data[:room].decode(errors="ignore") + _ELLIPSIS


def _restore(cls: type[ReportgridError], args: tuple[Any, ...]) -> ReportgridError:
    """Unpickle without calling the subclass's __init__ (whose signature is its own); the
    instance's fields come back as its __dict__ (pickle's state)."""
    err = cls.__new__(cls)
    err.args = args
    return err


class ReportgridError(Exception):
    """Base of every error Reportgrid raises on purpose.

    Every subclass pickles intact, whatever its __init__ takes: the queue worker runs
    generators in a process pool, and an exception that cannot be rebuilt in the parent
    breaks the whole pool (CPython's concurrent.futures marks the pool broken when a result
    fails to unpickle)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args), self.__dict__)


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


class OutOfRange(InvalidArgument):
    """A position outside the resource (a DownloadReport read_offset past the result's
    end): google.bytestream's OUT_OF_RANGE, with the same field violations."""


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


# The PreconditionFailure type of an idempotency key used again with another request.
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyReused(FailedPrecondition):
    """A SubmitReport idempotency key already stands for a report made from a different
    request (FAILED_PRECONDITION of type IDEMPOTENCY_KEY_REUSED; ALREADY_EXISTS from a
    server that words it so). Nothing was enqueued; `key` is the key, when known."""

    def __init__(self, description: str, *, key: str = "") -> None:
        if key and repr(key) not in description:
            description = f"idempotency_key {key!r}: {description}"
        super().__init__("idempotency_key", description, type_=IDEMPOTENCY_KEY_REUSED)
        self.key = key


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


class PermissionDenied(ReportgridError):
    """Valid credentials that may not be used now (a disabled tenant's key)."""


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
    and message, and is never retried. The message is bounded (it is stored with the
    report)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(bounded(message))
        self.reason = reason
