"""Latency percentiles and status bookkeeping: the arithmetic of a run, kept apart from the
processes so that tests can check it exactly."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least q% of values at or below
    it): always an observed latency, never an interpolation between two."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def latency_ms(durations_us: Iterable[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9 and max in milliseconds."""
    values = sorted(d / 1000 for d in durations_us)
    if not values:
        return {}
    out = {f"p{q:g}": round(percentile(values, q), 3) for q in PERCENTILES}
    out["max"] = round(values[-1], 3)
    return out


@dataclass(frozen=True, slots=True)
class StatusCheck:
    """gRPC statuses of one scenario, against what it expected."""

    counts: dict[str, int]  # status name -> calls
    expected: frozenset[str]
    calls_sent: int

    @property
    def unexpected(self) -> dict[str, int]:
        return {s: n for s, n in self.counts.items() if s not in self.expected and n}

    @property
    def counted(self) -> int:
        return sum(self.counts.values())

    @property
    def problems(self) -> list[str]:
        found = []
        if self.unexpected:
            found.append(
                "unexpected statuses: "
                + ", ".join(f"{s} x{n}" for s, n in sorted(self.unexpected.items()))
            )
        if self.counted != self.calls_sent:
            found.append(f"server counted {self.counted} calls but {self.calls_sent} were sent")
        return found


def merge_counts(
    per_worker: Iterable[Mapping[str, Mapping[str, int]]], method: str
) -> dict[str, int]:
    """Sum one method's per-status counts over the workers' counter files."""
    total: dict[str, int] = {}
    for counts in per_worker:
        for status, n in counts.get(method, {}).items():
            total[status] = total.get(status, 0) + n
    return total


def replies_with_data(data_bytes: int, frame_bytes: int) -> tuple[int, int]:
    """How many replies carried a message, from h2load's DATA byte count: a gRPC error
    carries no DATA frame, so (replies, leftover bytes). Leftover != 0 means the replies
    were not all of the expected size, and the count is then only an estimate."""
    if frame_bytes <= 0:
        raise ValueError("frame size must be positive")
    return divmod(data_bytes, frame_bytes)
