"""The region-loss drill as a test: two local regions, a steady stream of submits to A
through the SDK (both endpoints, A first), every process of A SIGKILLed mid-stream, then A
restarted. Every acknowledged report completes, A's backlog reconciles, and the reports run
twice are within the guarantee that holds for the replication lag the drill measured
(none at lag <= margin/2; otherwise at most those the standby claimed), each with one
visible outcome."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reportgrid.local.drill import DrillOptions, run_region_loss


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_losing_a_region_loses_no_acknowledged_report(tmp_path: Path) -> None:
    console = io.StringIO()
    figures = run_region_loss(
        DrillOptions(
            state_dir=tmp_path,
            rate_per_second=5,
            before_kill_seconds=4,
            after_kill_seconds=4,
            latency_samples=5,
            # Slower reports than region A's one stream worker keeps up with at this rate:
            # some are queued or running when it dies.
            report_cpu_ms=300,
            settle_timeout_seconds=90,
        ),
        console,
    )
    summary = console.getvalue()
    home, peer = "us-east-1", "eu-west-1"
    # Both regions acknowledged reports: the SDK failed over
    assert figures.acknowledged_by_region.get(home, 0) > 0, summary
    assert figures.acknowledged_by_region.get(peer, 0) > 0, summary
    # Every acknowledged report completed, some of A's through the mirror
    assert figures.completed == figures.acknowledged, summary
    assert figures.taken_over >= 1, summary
    # The guarantee for the lag measured: it was measured, and the double runs are within it
    assert figures.lag.items > 0, summary
    bound = 0 if figures.lag.max <= figures.margin_seconds / 2 else figures.standby_claimed
    assert figures.produced_twice <= bound, (summary, figures.twice)
    assert 0 < figures.recovery_seconds < 10, summary
    # Region A back: its backlog worked off, both tables agree, still nothing twice
    assert figures.backlog_reconciled, summary
    assert figures.tables_agree, summary
    assert figures.produced_twice_after_restart <= bound, (summary, figures.twice)
    # Whatever ran twice, a user sees one outcome: one result content, one terminal state
    assert figures.results_differing == 0, summary
    assert figures.states_differing == 0, summary
    assert figures.passed, summary
