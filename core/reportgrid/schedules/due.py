"""What a scheduler run does with one due schedule: which fire to submit, which to drop,
when it is due next, and whether this region should fire it at all (docs/SCHEDULES.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from reportgrid.schedules.cron import Expression

# After an outage only the latest missed fire inside this window is submitted.
CATCH_UP_WINDOW: Final = timedelta(hours=1)
# The peer region fires a minute only when it is still unfired this long after: several
# hundred times the global table's typical replication lag (about a second).
PEER_GRACE: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Plan:
    fire: datetime | None  # the fire time to submit, if any
    dropped: int  # missed fires not submitted (older than the newest, or out of window)
    next_due: datetime  # the first fire after `now`


def plan(expression: Expression, *, due: datetime, now: datetime) -> Plan:
    """Fires from `due` (the schedule's recorded next fire) up to `now`: submit the newest
    one if it lies within CATCH_UP_WINDOW, drop the rest. `due` later than `now` is not due."""
    now = now.astimezone(UTC)
    if due > now:
        return Plan(fire=None, dropped=0, next_due=due)
    # Walks every missed fire: an outage of D days on a 1-minute rate is D x 1,440 cheap
    # steps, which a run can afford; exact `dropped` counts feed the metric.
    missed: list[datetime] = []
    dropped = 0
    at = due
    horizon = now - CATCH_UP_WINDOW
    while at <= now:
        if at < horizon:
            dropped += 1
        else:
            missed.append(at)
        at = expression.next_fire(at)
    fire = missed[-1] if missed else None
    return Plan(fire=fire, dropped=dropped + max(len(missed) - 1, 0), next_due=at)


def fires_here(*, home_region: str, region: str, due: datetime, now: datetime) -> bool:
    """The home region fires as soon as due; another region only after PEER_GRACE."""
    if region == home_region:
        return now >= due
    return now >= due + PEER_GRACE
