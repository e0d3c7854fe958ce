"""The standby's decision, as a pure function of the replicated record and the clock."""

from __future__ import annotations

from functions.standby.decide import Verdict, decide, is_alive, stale_after_ms
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord

NOW = 1_800_000_000_000
GRACE, MARGIN = 30.0, 5.0


def _task(age_seconds: float) -> TaskRecord:
    task = TaskRecord(report_id="r", tenant="t", home_region="us-east-1")
    task.accept_time.FromMilliseconds(NOW - int(age_seconds * 1000))
    return task


def _record(state: State, lease_until_ms: int | None = None) -> ReportRecord:
    return ReportRecord("r", "t", "synthetic", state, NOW - 60_000, lease_until_ms=lease_until_ms)


def _decide(task: TaskRecord, record: ReportRecord | None, *, alive: bool = False) -> Verdict:
    return decide(
        task, record, now_ms=NOW, grace_seconds=GRACE, margin_seconds=MARGIN, home_alive=alive
    ).verdict


def test_terminal_reports_are_dropped() -> None:
    for state in (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.EXPIRED):
        assert _decide(_task(1000), _record(state)) is Verdict.DROP


def test_a_lost_home_s_unstarted_report_is_taken_after_the_grace() -> None:
    assert _decide(_task(GRACE + 1), None) is Verdict.TAKE
    assert _decide(_task(GRACE + 1), _record(State.PENDING)) is Verdict.TAKE
    early = decide(
        _task(GRACE - 10),
        None,
        now_ms=NOW,
        grace_seconds=GRACE,
        margin_seconds=MARGIN,
        home_alive=False,
    )
    assert early.verdict is Verdict.WAIT
    assert early.wait_seconds == 10


def test_a_beating_home_keeps_its_unstarted_reports() -> None:
    # Given a home region that still beats, however old the task
    assert _decide(_task(GRACE + 1), None, alive=True) is Verdict.WAIT
    assert _decide(_task(GRACE * 100), _record(State.PENDING), alive=True) is Verdict.WAIT
    # ... the standby looks again soon, in case the home region is lost meanwhile
    waiting = decide(
        _task(GRACE + 1),
        None,
        now_ms=NOW,
        grace_seconds=GRACE,
        margin_seconds=MARGIN,
        home_alive=True,
    )
    assert waiting.wait_seconds * 1000 <= stale_after_ms(MARGIN)


def test_a_running_report_is_taken_only_a_margin_after_its_lease_ran_out() -> None:
    live = _record(State.RUNNING, lease_until_ms=NOW + 1000)
    assert _decide(_task(1000), live) is Verdict.WAIT
    just_expired = _record(State.RUNNING, lease_until_ms=NOW - 1000)
    verdict = decide(
        _task(1000),
        just_expired,
        now_ms=NOW,
        grace_seconds=GRACE,
        margin_seconds=MARGIN,
        home_alive=False,
    )
    assert verdict.verdict is Verdict.WAIT
    assert verdict.wait_seconds == MARGIN - 1
    long_expired = _record(State.RUNNING, lease_until_ms=NOW - int(MARGIN * 1000) - 1)
    assert _decide(_task(1000), long_expired) is Verdict.TAKE


def test_liveness_follows_the_heartbeat() -> None:
    assert is_alive(NOW - 1000, now_ms=NOW, margin_seconds=MARGIN)
    assert not is_alive(NOW - stale_after_ms(MARGIN) - 1, now_ms=NOW, margin_seconds=MARGIN)
    assert not is_alive(None, now_ms=NOW, margin_seconds=MARGIN)
