"""The region-loss drill as a test: two local regions, a steady stream of submits to A
through the SDK (both endpoints, A first), every process of A SIGKILLed mid-stream, then A
restarted. Every acknowledged report completes, none twice, and A's backlog reconciles."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reportgrid.local.drill import DrillOptions, run_region_loss


@pytest.mark.slow
@pytest.mark.timeout(150)
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
            settle_timeout_seconds=45,
        ),
        console,
    )
    summary = console.getvalue()
    home, peer = "us-east-1", "eu-west-1"
    # Both regions acknowledged reports: the SDK failed over
    assert figures.acknowledged_by_region.get(home, 0) > 0, summary
    assert figures.acknowledged_by_region.get(peer, 0) > 0, summary
    # Every acknowledged report completed, some of A's through the mirror, none twice
    assert figures.completed == figures.acknowledged, summary
    assert figures.taken_over >= 1, summary
    assert figures.produced_twice == 0, (summary, figures.twice)
    assert 0 < figures.recovery_seconds < 10, summary
    assert figures.all_terminal_seconds < 45, summary
    # Region A back: its backlog worked off, both tables agree, still nothing twice
    assert figures.backlog_reconciled, summary
    assert figures.tables_agree, summary
    assert figures.produced_twice_after_restart == 0, (summary, figures.twice)
    assert figures.passed
