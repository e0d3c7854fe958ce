"""Who is calling and until when: the `Call` every handler gets, and the budget its deadline
comes from. The interceptors resolve both before a handler runs; handlers and the modules
they use depend on this module only, never on the interceptors or the service.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from reportgrid.settings import Settings

# A client deadline beyond this is taken as this: a deadline far in the future (or a
# client's overflowed arithmetic) must not make the monotonic deadline meaningless.
MAX_CLIENT_DEADLINE_SECONDS: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class Call:
    """Who is calling and until when."""

    tenant: str
    deadline: float  # time.monotonic()
    key_prefix: str = ""  # the API key's first characters (audit records name the caller)
    # The call's metadata, kept by reference: only Submit reads it (the trace context).
    metadata: Iterable[tuple[str, str | bytes]] = ()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True, slots=True)
class CallBudget:
    """How long a call may run. A unary call (or DownloadReport) gets the client's deadline,
    or `call_seconds` when it set none: no call may wait forever on a dependency. A watch,
    which may stay open for an hour, gets the client's deadline but at most
    `watch_seconds`."""

    call_seconds: float
    watch_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> CallBudget:
        return cls(settings.call_budget_seconds, settings.max_watch_seconds)

    def deadline(self, client_remaining: float | None, *, long_lived: bool) -> float:
        """The call's deadline (a time.monotonic() value); `client_remaining` is what the
        client's own deadline leaves (grpc's `time_remaining()`, None without one)."""
        if long_lived:
            limit, default = self.watch_seconds, self.watch_seconds
        else:
            limit, default = MAX_CLIENT_DEADLINE_SECONDS, self.call_seconds
        budget = default if client_remaining is None else min(client_remaining, limit)
        return time.monotonic() + budget
