"""Issue 12.2: the quota arithmetic. DescribeStreamSummary is limited to 20 calls/s per
account; the edge calls it only when idle, at most once per probe interval per process. At
the deployment's largest (max tasks, during a rolling deployment, every process of every
task probing as often as it may) the fleet stays under half of that quota."""

from __future__ import annotations

import ast
from pathlib import Path

from cdk.config import Capacity
from grpc_edge.dependency_health import (
    DESCRIBE_STREAM_SUMMARY_ACCOUNT_TPS,
    KINESIS_PROBE_MIN_INTERVAL_SECONDS,
    HealthTiming,
)

EDGE_SERVICE = Path(__file__).resolve().parents[3] / "cdk" / "constructs" / "edge_service.py"
SAFE_FRACTION = 0.5


def deployment_max_percent() -> int:
    """The edge service's `max_healthy_percent`, read from the one place it is set."""
    for node in ast.walk(ast.parse(EDGE_SERVICE.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "max_healthy_percent":
            assert isinstance(node.value, ast.Constant)
            return int(node.value.value)
    raise AssertionError("edge_service.py sets no max_healthy_percent")


def test_the_whole_fleet_probes_under_half_the_account_quota() -> None:
    capacity = Capacity()  # cdk/config.py defaults: what `cdk deploy` builds
    # Tasks at the scaling maximum, doubled while a rolling deployment runs old and new.
    tasks = capacity.edge_max_tasks * deployment_max_percent() / 100
    # Each task runs edge_workers gRPC processes (REPORTGRID_EDGE_WORKERS in its task
    # definition), and each process has its own monitor.
    processes = tasks * capacity.edge_workers
    assert processes == 120  # 30 tasks x 200 % x 2 processes, as issue 12 counts them
    # Worst case: every process idle (or NOT_SERVING) and probing at its shortest interval.
    fleet_rate = processes / KINESIS_PROBE_MIN_INTERVAL_SECONDS
    assert fleet_rate <= SAFE_FRACTION * DESCRIBE_STREAM_SUMMARY_ACCOUNT_TPS, fleet_rate
    # The jitter only lengthens intervals: it never raises the rate.
    timing = HealthTiming()
    assert timing.probe_min_interval == KINESIS_PROBE_MIN_INTERVAL_SECONDS
    assert timing.probe_max_interval >= timing.probe_min_interval


def test_a_busy_edges_failover_window_is_unchanged() -> None:
    # Busy, the verdict comes from PutRecords outcomes on every look: fail_after looks.
    timing = HealthTiming()
    assert timing.fail_after * timing.interval <= 6.0
    # Idle or taken out, recovery needs recover_after probes at the longest interval.
    assert timing.recover_after * timing.probe_max_interval <= 45.0
