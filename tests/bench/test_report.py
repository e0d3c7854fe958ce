"""Results files, the table, the targets against the null server, the plot, PERFORMANCE.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report


def result(
    name: str,
    server: str,
    rps: float,
    cpu_us: float,
    p99_half: float | None,
    *,
    problems: list[str] | None = None,
    in_flight: int = 200,
) -> dict[str, Any]:
    return {
        "scenario": name,
        "server": server,
        "throughput_rps": rps,
        "in_flight": in_flight,
        "requests": 1000,
        "server_cpu_us_per_request": cpu_us,
        "latency_ms_saturated": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "p99.9": 4.0},
        "latency_ms_half_saturation": (
            None
            if p99_half is None
            else {"p50": 0.5, "p90": 1.0, "p99": p99_half, "p99.9": p99_half * 2}
        ),
        "statuses": {"OK": 1000},
        "problems": problems or [],
        "command": f"h2load ... {name}",
        "paced_command": None,
    }


RESULTS = [
    result("null-submit", "null", 6000, 150, 4.0),
    result("null-get", "null", 6000, 150, 3.0),
    result("edge-submit", "edge", 5400, 170, 20.0),  # 0.90 x, 1.13 x CPU, 20 ms: all met
    result("edge-get-hot", "edge", 4800, 190, 6.0),  # 0.80 x: missed; 6 ms: missed
    result(
        "edge-inflight-10k",
        "edge",
        3000,
        300,
        None,
        problems=["2 calls CANCELLED"],
        in_flight=10_000,
    ),
]


def test_targets_are_judged_against_the_same_run() -> None:
    text = report.targets_table(RESULTS)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert "0.90 x" in rows["Submit throughput ≥ 0.85 x null"]
    assert "| yes |" in rows["Submit throughput ≥ 0.85 x null"]
    assert "| yes |" in rows["Edge CPU per Submit ≤ 1.2 x null"]
    assert "0.80 x" in rows["Hot Get throughput ≥ 0.9 x null"]
    assert "**NO**" in rows["Hot Get throughput ≥ 0.9 x null"]
    assert "**NO**" in rows["Hot Get p99 ≤ 5 ms at half saturation"]
    assert "| yes |" in rows["Submit p99 ≤ 25 ms at half saturation"]
    assert "**NO**" in rows["10,000 in flight, zero errors (edge)"]
    assert "not measured" in rows["10,000 in flight, zero errors (null)"]


def test_results_files_are_named_by_date_and_scenario(tmp_path: Path) -> None:
    paths = report.write_results(RESULTS[:2], tmp_path, "2024-01-02")
    assert [p.name for p in paths] == ["2024-01-02-null-submit.json", "2024-01-02-null-get.json"]
    assert json.loads(paths[0].read_text())["throughput_rps"] == 6000


def test_table_has_a_row_per_scenario_with_its_figures() -> None:
    lines = report.table(RESULTS).splitlines()
    assert len(lines) == 2 + len(RESULTS)
    assert "| edge-submit | 200 | 5,400 |" in lines[4]
    assert lines[6].endswith("| 1 |")  # one problem


def test_performance_md_shows_commands_problems_plot_and_keeps_findings(tmp_path: Path) -> None:
    old = tmp_path / "PERFORMANCE.md"
    old.write_text(f"# old figures\n\n{report.FINDINGS_MARK}\n\nThe cache lookup dominates.\n")
    plot = report.plot(RESULTS, tmp_path / "performance.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.performance_md(
        RESULTS,
        date="2024-01-02",
        command="python -m bench",
        plot_path=plot.name,
        machine="2 CPUs",
        notes=["noisy machine"],
        findings=report.kept_findings(old),
    )
    assert "`h2load ... edge-submit`" in text
    assert "**edge-inflight-10k**: 2 calls CANCELLED" in text
    assert "![throughput and latency](performance.png)" in text
    assert "> noisy machine" in text
    assert text.rstrip().endswith("The cache lookup dominates.")
    assert report.kept_findings(tmp_path / "missing.md") == ""
