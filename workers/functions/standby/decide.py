"""Whether the standby takes a mirrored task, looks again later, or drops it. Pure: the
record as this region's replica of the global table shows it, and the clock.

- no record, or a PENDING one: take it only when the home region is presumed lost (its
  heartbeat is stale) and the task is older than the grace. While the home region beats
  it may be writing the record right now, and a claim here would overwrite that write
  under last-writer-wins before it replicated: look again later;
- RUNNING with a lease that ran out more than `margin` ago: its worker (or its region) is
  gone -- the margin covers replication lag, so a live worker's renewal would have
  arrived: take it over;
- RUNNING with a live lease, or not yet old enough: look again when that changes (the
  message stays queued, so a report that stalls later is still taken over);
- terminal: drop. A deleted report (a tombstone item) is dropped by the worker before it
  asks here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from reportgrid import resources
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord


class Verdict(enum.Enum):
    TAKE = "take"
    WAIT = "wait"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    # For WAIT: seconds until the answer may change.
    wait_seconds: float = 0.0


def accepted_ms(task: TaskRecord, record: ReportRecord | None) -> int | None:
    if task.HasField("accept_time"):
        return int(task.accept_time.ToMilliseconds())
    return record.created_ms if record is not None else None


def decide(
    task: TaskRecord,
    record: ReportRecord | None,
    *,
    now_ms: int,
    grace_seconds: float,
    margin_seconds: float,
    home_alive: bool,
) -> Decision:
    grace_ms = int(grace_seconds * 1000)
    margin_ms = int(margin_seconds * 1000)
    if record is not None and record.terminal:
        return Decision(Verdict.DROP)
    if record is None or record.state is State.PENDING:
        accepted = accepted_ms(task, record)
        age = now_ms - accepted if accepted is not None else grace_ms
        if home_alive:  # look again soon: the home region may be lost meanwhile
            return Decision(Verdict.WAIT, stale_after_ms(margin_seconds) / 1000)
        if age >= grace_ms:
            return Decision(Verdict.TAKE)
        return Decision(Verdict.WAIT, (grace_ms - age) / 1000)
    # RUNNING: only a lease that ran out by more than the margin is abandoned.
    free_at = (record.lease_until_ms or 0) + margin_ms
    if now_ms >= free_at:
        return Decision(Verdict.TAKE)
    return Decision(Verdict.WAIT, (free_at - now_ms) / 1000)


def stale_after_ms(margin_seconds: float) -> int:
    """How old a region's last heartbeat may be before it is presumed lost."""
    beats = resources.REGION_STALE_BEATS * resources.REGION_HEARTBEAT_SECONDS
    return int((beats + margin_seconds) * 1000)


def is_alive(last_beat_ms: int | None, *, now_ms: int, margin_seconds: float) -> bool:
    """A region that never beat counts as lost: nothing says it is working."""
    return last_beat_ms is not None and now_ms - last_beat_ms <= stale_after_ms(margin_seconds)
