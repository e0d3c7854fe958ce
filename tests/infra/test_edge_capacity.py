"""The capacity defaults follow from the measured figures in cdk/config.py (the edge's CPU
per Submit, a task record's size) and the design load, as docs/PERFORMANCE.md derives
them: change a figure and this names the default that no longer fits."""

from __future__ import annotations

from pathlib import Path

from cdk import config as c
from tests.infra.conftest import Synthesized

DOCS = Path(__file__).resolve().parents[2] / "docs" / "PERFORMANCE.md"
CAPACITY = c.Capacity()


def test_the_figures_are_measured_ones() -> None:
    assert c.EDGE_CPU_US_PER_SUBMIT_MEASURED > 0
    assert c.TASK_RECORD_BYTES_MEASURED > 0
    assert 0 < c.EDGE_VCPU_DERATE <= 1


def test_request_count_target_is_the_cpu_target_in_requests() -> None:
    # Both policies must call for a new task at the same load; a lower request target
    # would scale out on traffic the tasks carry easily, a higher one never fire.
    per_task = c.edge_submits_per_task(CAPACITY.edge_cpu, CAPACITY.edge_cpu_target_percent)
    assert CAPACITY.edge_cpu_target_percent == c.EDGE_CPU_TARGET_PERCENT
    assert CAPACITY.edge_requests_per_target_per_minute == per_task * 60


def test_one_region_alone_carries_the_design_load_before_scaling_out() -> None:
    # Two regions share the load; when one is lost the other takes all of it at once and
    # must carry it at its failover ceiling while autoscaling adds tasks.
    needed = c.edge_tasks_for(
        c.DESIGN_REQUESTS_PER_SECOND, CAPACITY.edge_cpu, c.FAILOVER_CPU_PERCENT
    )
    assert CAPACITY.edge_min_tasks == max(3, needed)  # and one task per AZ at least
    at_target = c.edge_tasks_for(
        c.DESIGN_REQUESTS_PER_SECOND, CAPACITY.edge_cpu, CAPACITY.edge_cpu_target_percent
    )
    assert CAPACITY.edge_max_tasks >= 2 * at_target  # room past the design load
    assert CAPACITY.edge_workers == CAPACITY.edge_cpu // 1024  # one process per vCPU


def test_stream_shards_take_the_design_load_in_one_region() -> None:
    assert CAPACITY.stream_shards == c.stream_shards_for(
        c.DESIGN_REQUESTS_PER_SECOND, c.TASK_RECORD_BYTES_MEASURED
    )


def test_the_template_carries_the_derived_targets(synth: Synthesized) -> None:
    template = synth.regional("eu-west-1")
    policies = template.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    targets = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"][
            "PredefinedMetricSpecification"
        ]["PredefinedMetricType"]: p["Properties"]["TargetTrackingScalingPolicyConfiguration"][
            "TargetValue"
        ]
        for p in policies.values()
        if "TargetTrackingScalingPolicyConfiguration" in p["Properties"]
        and "PredefinedMetricSpecification"
        in p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    }
    assert targets["ALBRequestCountPerTarget"] == CAPACITY.edge_requests_per_target_per_minute
    assert targets["ECSServiceAverageCPUUtilization"] == c.EDGE_CPU_TARGET_PERCENT


def test_the_performance_doc_states_the_same_figures() -> None:
    text = DOCS.read_text()
    for figure in (
        f"{c.EDGE_CPU_US_PER_SUBMIT_MEASURED} us",
        f"{c.EDGE_SUBMITS_PER_VCPU:,} Submits/s per vCPU",
        f"{CAPACITY.edge_requests_per_target_per_minute:,}",
        f"{CAPACITY.stream_shards} shards",
    ):
        assert figure in text, f"docs/PERFORMANCE.md does not state {figure!r}"
