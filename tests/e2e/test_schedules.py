"""Scheduled reports in the local region, under the test clock: the scheduler function runs
from its asset once per minute of the local scheduler's clock (reportgrid/local/
scheduler_source.py, configured from the template's one rate(1 minute) schedule), and the
tests move that clock instead of waiting for the wall clock.

One region (`reportgrid-dev`) serves the module. The clock is stood ten minutes ahead of the
wall clock first: the edge files a new schedule's first fire by the wall clock (CreateSchedule
and ResumeSchedule), so every schedule is due when the scheduler's clock next moves, and
only the fires of the minutes the test moves it through can happen. Each fire is checked as
the client sees it: ListReports by the label `reportgrid-schedule=<id>`, every report
SUCCEEDED.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reportgrid.client import ReportClient
from reportgrid.local.scheduler_source import last_ran, set_clock
from reportgrid.resources import SCHEDULER_SCHEDULE_NAME
from reportgrid.schedules.fires import SCHEDULE_LABEL
from reportgrid.v1 import reports_pb2 as pb
from tests.e2e.test_local_region import REGION, DevRegion, running_region

pytestmark = pytest.mark.slow

DATA = b"region,amount\neu,1\nus,2\n"
SUM = {"group_by": ["region"], "aggregates": [{"op": "sum", "column": "amount"}]}
# How long a run, and the report it submits, may take here.
RUN_TIMEOUT = 20.0
# After the expected reports are there: long enough for another fire's report to show
# (a run ends with the fire's task on the stream; the stream worker, batching for up to
# 1 s, writes its report).
SETTLE = 2.5


@dataclass
class Clock:
    """The local scheduler's clock: stands where the test puts it."""

    path: Path
    now: datetime

    def set(self, when: datetime) -> None:
        self.now = when
        set_clock(self.path, when)
        _wait(
            lambda: (last_ran(self.path, REGION, SCHEDULER_SCHEDULE_NAME) or _EPOCH) >= when,
            RUN_TIMEOUT,
            f"the scheduler's run for {when:%H:%M}",
        )

    def advance(self, minutes: int) -> None:
        self.set(self.now + timedelta(minutes=minutes))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Scheduled:
    region: DevRegion
    clock: Clock

    def client(self) -> ReportClient:
        return ReportClient(self.region.endpoint, api_key=self.region.api_key)

    def runs(self, schedule_id: str) -> list[pb.Report]:
        with self.client() as rg:
            return list(rg.list(labels={SCHEDULE_LABEL: schedule_id}))


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduled]:
    state = tmp_path_factory.mktemp("state")
    with running_region(state) as region:
        # Ten minutes ahead, on a minute: every minute up to it is run once (no schedules).
        start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=10)
        clock = Clock(state / "clock", start)
        clock.set(start)
        yield Scheduled(region, clock)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _runs_settle(scheduled: Scheduled, schedule_id: str, count: int) -> list[pb.Report]:
    """Exactly `count` runs of the schedule, each SUCCEEDED."""
    _wait(lambda: len(scheduled.runs(schedule_id)) >= count, RUN_TIMEOUT, f"{count} runs")
    time.sleep(SETTLE)
    runs = scheduled.runs(schedule_id)
    assert len(runs) == count, [r.report_id for r in runs]
    with scheduled.client() as rg:
        states = {r.report_id: rg.wait(r.report_id, timeout=RUN_TIMEOUT).state for r in runs}
    assert set(states.values()) == {pb.REPORT_STATE_SUCCEEDED}, states
    return runs


def _create(scheduled: Scheduled) -> str:
    with scheduled.client() as rg:
        # allow: a minute's fire does not wait for the last one's report (the clock moves
        # several minutes at once here, faster than a report ends).
        schedule = rg.create_schedule(
            "summary",
            SUM,
            rate="1 minute",
            overlap="allow",
            input_data=DATA,
            input_format="csv",
            labels={"team": "ops"},
        )
    return str(schedule.schedule_id)


def test_a_rate_schedule_fires_once_per_minute_of_the_clock(scheduled: Scheduled) -> None:
    # Given a schedule every minute
    schedule_id = _create(scheduled)
    assert scheduled.runs(schedule_id) == []
    # When the clock moves one minute, then two more at once
    scheduled.clock.advance(1)
    _runs_settle(scheduled, schedule_id, 1)
    scheduled.clock.advance(2)
    # Then one report per minute, each an ordinary report with the schedule's label
    runs = _runs_settle(scheduled, schedule_id, 3)
    assert len({r.report_id for r in runs}) == 3
    for report in runs:
        assert dict(report.labels) == {"team": "ops", SCHEDULE_LABEL: schedule_id}
        assert report.kind == "summary"


def test_a_paused_schedule_fires_nothing_and_resumes_without_replaying(
    scheduled: Scheduled,
) -> None:
    # Given a schedule that has fired once, then is paused
    schedule_id = _create(scheduled)
    scheduled.clock.advance(1)
    _runs_settle(scheduled, schedule_id, 1)
    with scheduled.client() as rg:
        assert rg.pause_schedule(schedule_id).paused
    # When the clock moves three minutes
    scheduled.clock.advance(3)
    # Then no run fired it
    _runs_settle(scheduled, schedule_id, 1)
    # When it is resumed and the clock moves two more minutes
    with scheduled.client() as rg:
        assert not rg.resume_schedule(schedule_id).paused
    scheduled.clock.advance(2)
    # Then it fired for those two minutes only: the three paused ones are not replayed
    _runs_settle(scheduled, schedule_id, 3)
    with scheduled.client() as rg:
        rg.delete_schedule(schedule_id)
