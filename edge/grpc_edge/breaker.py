"""A circuit breaker around Redis: a cache that fails or hangs must cost a request at most
one short timeout, and after a few failures nothing at all until it recovers.

Closed: calls go through, each bounded by `timeout`. After `failure_threshold` consecutive
failures the breaker opens: calls fail at once with `BreakerOpen` for `reset_after`
seconds. Then one trial call is let through (half-open); its success closes the breaker,
its failure opens it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class BreakerOpen(Exception):
    """The dependency is considered down; the call was not attempted."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        timeout: float = 0.25,
        failure_threshold: int = 3,
        reset_after: float = 2.0,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self.opened_count = 0  # how often it opened (metrics, tests)

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def _admit(self) -> bool:
        if self._opened_at is None:
            return True
        if self._trial_running or time.monotonic() - self._opened_at < self.reset_after:
            return False
        self._trial_running = True
        return True

    async def call(
        self, operation: Callable[[], Awaitable[T]], *, budget: float | None = None
    ) -> T:
        """Run `operation` within min(timeout, budget) seconds, or raise BreakerOpen /
        TimeoutError / the operation's own error."""
        if not self._admit():
            raise BreakerOpen(self.name)
        timeout = self.timeout if budget is None else max(0.001, min(self.timeout, budget))
        try:
            # asyncio.timeout, not wait_for: no extra task per Redis call (Python 3.11's
            # wait_for wraps the coroutine in one).
            async with asyncio.timeout(timeout):
                result = await operation()
        except asyncio.CancelledError:
            self._trial_running = False
            raise
        except Exception:
            self._record_failure()
            raise
        self._record_success()
        return result

    def _record_failure(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            if self._opened_at is None:
                self.opened_count += 1
            self._opened_at = time.monotonic()

    def _record_success(self) -> None:
        self._trial_running = False
        self._failures = 0
        self._opened_at = None
