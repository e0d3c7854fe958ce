"""The service-level objectives, their error budgets and the burn-rate windows that page:
the one place to change a target or a window (cdk/constructs/slo.py builds the alarms and
the dashboard widgets from it; docs/OBSERVABILITY.md explains them).

Burn rate is how fast the error budget goes: 1 spends exactly the budget over the SLO
period, 14.4 spends 2 % of a 30-day budget in an hour. Each pair is a long window (the
error rate is real) AND a short one (it is still happening, so the alarm resets soon after
a fix): the multi-window, multi-burn-rate alerts of the SRE workbook, chapter "Alerting on
SLOs" (1 h/5 m at 14.4x, 6 h/30 m at 6x)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from reportgrid import resources as r

# The period the budget is for: a target of 99.9 % allows 0.1 % bad events in it.
BUDGET_PERIOD: Final = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """Page when the burn rate over `long` AND over `short` is above `factor`.
    `region_unhealthy`: the pair is a cause of the region's composite (traffic moves)."""

    name: str  # "Fast", "Slow": part of the alarms' names
    long: timedelta
    short: timedelta
    factor: float
    region_unhealthy: bool

    @property
    def budget_spent(self) -> float:
        """The share of the period's budget one `long` window at `factor` spends."""
        return self.factor * (self.long / BUDGET_PERIOD)


# Fast burn: a region failing its clients now. It moves traffic (a cause of "region
# unhealthy"), as EdgeFaults does. Slow burn: pages, but it is a degradation to fix in
# place, not a reason to send the region's traffic to its peer.
FAST_BURN: Final = BurnWindow("Fast", timedelta(hours=1), timedelta(minutes=5), 14.4, True)
SLOW_BURN: Final = BurnWindow("Slow", timedelta(hours=6), timedelta(minutes=30), 6.0, False)
BURN_WINDOWS: Final = (FAST_BURN, SLOW_BURN)


@dataclass(frozen=True, slots=True)
class AvailabilitySlo:
    """Good = calls of `method` that did not end in a server fault (RequestFaults' codes),
    from the edge's EMF counts {service, Method} and {service, Method, Code}."""

    name: str
    method: str
    target: float  # e.g. 0.999
    what: str
    # Fewer calls than this in a window burn nothing: one fault in ten calls is no outage.
    min_events: int = 20

    @property
    def budget(self) -> float:
        return 1.0 - self.target


@dataclass(frozen=True, slots=True)
class LatencySlo:
    """Good = light reports terminal within `threshold_ms` of their acceptance, from the
    stream worker's METRIC.TIME_TO_TERMINAL (one value per report it ended)."""

    name: str
    service: str
    threshold_ms: int
    target: float
    what: str
    min_events: int = 20

    @property
    def budget(self) -> float:
        return 1.0 - self.target


SUBMIT_AVAILABILITY: Final = AvailabilitySlo(
    "SubmitAvailability", "SubmitReport", 0.999, "SubmitReport calls without a server fault"
)
GET_AVAILABILITY: Final = AvailabilitySlo(
    "GetAvailability", "GetReport", 0.999, "GetReport calls without a server fault"
)
LIGHT_TIME_TO_TERMINAL: Final = LatencySlo(
    "LightTimeToTerminal",
    r.SERVICE_STREAM_WORKER,
    30_000,
    0.99,
    "light reports terminal within 30 s of acceptance",
)
SLOS: Final[tuple[AvailabilitySlo | LatencySlo, ...]] = (
    SUBMIT_AVAILABILITY,
    GET_AVAILABILITY,
    LIGHT_TIME_TO_TERMINAL,
)
