"""The drill's verdict is the promise that holds for the lag it measured, not a constant."""

from __future__ import annotations

from reportgrid.local.drill import DrillFigures
from reportgrid.local.replicator import LagSummary


def _figures(*, lag_max: float, twice: int, claimed: int, arbiter: bool = False) -> DrillFigures:
    return DrillFigures(
        acknowledged=10,
        completed=10,
        produced_twice=twice,
        produced_twice_after_restart=twice,
        backlog_reconciled=True,
        tables_agree=True,
        margin_seconds=1.0,
        arbiter=arbiter,
        lag=LagSummary.of([0.1, lag_max]),
        standby_claimed=claimed,
    )


def test_within_half_the_margin_nothing_may_run_twice() -> None:
    assert _figures(lag_max=0.5, twice=0, claimed=4).passed
    assert not _figures(lag_max=0.5, twice=1, claimed=4).passed


def test_beyond_it_at_most_the_reports_the_standby_claimed_may() -> None:
    assert _figures(lag_max=3.0, twice=4, claimed=4).passed
    assert not _figures(lag_max=3.0, twice=5, claimed=4).passed
    assert "at most 4 run twice" in _figures(lag_max=3.0, twice=0, claimed=4).guarantee()
    # ... and only those: a report run twice that no standby claimed breaks the promise
    unclaimed = _figures(lag_max=3.0, twice=1, claimed=4)
    unclaimed.twice_unclaimed = 1
    assert not unclaimed.passed


def test_with_the_arbiter_nothing_may_run_twice_at_any_lag() -> None:
    assert _figures(lag_max=12.0, twice=0, claimed=4, arbiter=True).passed
    assert not _figures(lag_max=12.0, twice=1, claimed=4, arbiter=True).passed


def test_one_visible_outcome_is_always_required() -> None:
    figures = _figures(lag_max=3.0, twice=1, claimed=4)
    figures.results_differing = 1
    assert not figures.passed


def test_lag_summary_reports_percentiles_and_the_worst_item() -> None:
    summary = LagSummary.of([0.2] * 98 + [1.0, 5.0])
    assert (summary.items, summary.p50, summary.max) == (100, 0.2, 5.0)
    assert LagSummary.of([]) == LagSummary()
