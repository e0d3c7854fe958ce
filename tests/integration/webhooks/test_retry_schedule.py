"""The webhook retry schedule (functions/webhooks/delivery.py): full-jitter backoff, and
the last retry at the end of the retry window, never a backoff past it."""

from __future__ import annotations

import random

from functions.webhooks import delivery
from reportgrid import resources

DAY_MS = 86_400_000


class _Top(random.Random):
    """Draws the top of every range: the longest delay the schedule allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_delays_grow_to_the_sqs_cap_early_in_the_window() -> None:
    delays = [
        delivery.retry_delay(
            n, base=30, first_attempt_ms=0, now_ms=60_000, window_seconds=25 * 3600, rng=_Top()
        )
        for n in (1, 2, 6, 40)
    ]
    assert delays == [30, 60, 900, resources.MAX_SQS_DELAY_SECONDS]


def test_the_last_retry_lands_at_the_end_of_the_window() -> None:
    # Given 10 s of a 25 h window left and a backoff that would wait 15 minutes
    window = 25 * 3600
    now = window * 1000 - 10_000
    delay = delivery.retry_delay(
        40, base=30, first_attempt_ms=0, now_ms=now, window_seconds=window, rng=_Top()
    )
    # Then the retry comes at the window's end (and a failure then gives up)
    assert delay == 10
    assert delivery.out_of_time(0, now + delay * 1000, window_seconds=window)
    # Past the end: no delay at all (the caller gives up first anyway)
    late = delivery.retry_delay(
        3, base=30, first_attempt_ms=0, now_ms=2 * DAY_MS, window_seconds=window, rng=_Top()
    )
    assert late == 0
