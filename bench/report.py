"""What a bench run leaves behind: one JSON file per scenario in bench/results/, the table
printed to the terminal, a throughput/latency plot (PNG) and docs/PERFORMANCE.md with every
figure next to the command that produced it and the issue's targets checked against the
null server of the same run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def write_results(results: Sequence[Result], out_dir: Path, date: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for result in results:
        path = out_dir / f"{date}-{result['scenario']}.json"
        path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _p(result: Result, key: str, q: str) -> float | None:
    lat = result.get(key) or {}
    value = lat.get(q)
    return None if value is None else float(value)


TABLE_HEADER = (
    "| scenario | in flight | req/s | p50 ms | p99 ms | p99 ms @ half sat | p99.9 ms @ half sat "
    "| server CPU us/req | statuses | problems |"
)


def table(results: Sequence[Result]) -> str:
    """A Markdown table (it reads as well in a terminal as in the docs)."""
    lines = [TABLE_HEADER, "|" + "---|" * 10]
    for r in results:
        statuses = r.get("statuses")
        status_text = (
            ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) if statuses else "n/a"
        )
        lines.append(
            f"| {r['scenario']} | {r['in_flight']:,} | {_fmt(r['throughput_rps'], 0)} "
            f"| {_fmt(_p(r, 'latency_ms_saturated', 'p50'), 2)} "
            f"| {_fmt(_p(r, 'latency_ms_saturated', 'p99'), 2)} "
            f"| {_fmt(_p(r, 'latency_ms_half_saturation', 'p99'), 2)} "
            f"| {_fmt(_p(r, 'latency_ms_half_saturation', 'p99.9'), 2)} "
            f"| {_fmt(r['server_cpu_us_per_request'])} | {status_text} "
            f"| {len(r['problems']) or ''} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue, measured against figures of the same run."""

    name: str
    check: Callable[[dict[str, Result]], tuple[str, bool] | None]  # (measured, met) or None


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def _throughput_vs(
    scenario: str, baseline: str, factor: float
) -> Callable[[dict[str, Result]], tuple[str, bool] | None]:
    def check(by_name: dict[str, Result]) -> tuple[str, bool] | None:
        if scenario not in by_name or baseline not in by_name:
            return None
        a = by_name[scenario]["throughput_rps"]
        b = by_name[baseline]["throughput_rps"]
        ratio = _ratio(a, b)
        return f"{ratio:.2f} x ({a:,.0f} vs {b:,.0f} req/s)", ratio >= factor

    return check


def _cpu_vs(
    scenario: str, baseline: str, factor: float
) -> Callable[[dict[str, Result]], tuple[str, bool] | None]:
    def check(by_name: dict[str, Result]) -> tuple[str, bool] | None:
        if scenario not in by_name or baseline not in by_name:
            return None
        a = by_name[scenario]["server_cpu_us_per_request"]
        b = by_name[baseline]["server_cpu_us_per_request"]
        ratio = _ratio(a, b)
        return f"{ratio:.2f} x ({a:.0f} vs {b:.0f} us/req)", ratio <= factor

    return check


def _p99_half(
    scenario: str, limit_ms: float
) -> Callable[[dict[str, Result]], tuple[str, bool] | None]:
    def check(by_name: dict[str, Result]) -> tuple[str, bool] | None:
        value = (
            _p(by_name[scenario], "latency_ms_half_saturation", "p99")
            if scenario in by_name
            else None
        )
        if value is None:
            return None
        return f"{value:.2f} ms", value <= limit_ms

    return check


def _clean(scenario: str) -> Callable[[dict[str, Result]], tuple[str, bool] | None]:
    def check(by_name: dict[str, Result]) -> tuple[str, bool] | None:
        if scenario not in by_name:
            return None
        r = by_name[scenario]
        bad = {k: v for k, v in (r.get("statuses") or {}).items() if k != "OK"}
        ok = not r["problems"]
        text = f"{r['in_flight']:,} in flight, {r['requests']:,} calls, " + (
            "0 errors" if ok else f"{len(r['problems'])} problem(s) {bad or ''}"
        )
        return text, ok

    return check


TARGETS: tuple[Target, ...] = (
    Target("Submit throughput ≥ 0.85 x null", _throughput_vs("edge-submit", "null-submit", 0.85)),
    Target("Edge CPU per Submit ≤ 1.2 x null", _cpu_vs("edge-submit", "null-submit", 1.2)),
    # The same two targets with Kinesis answered at once: the edge's own cost, apart from
    # the local emulator's (issue 21).
    Target(
        "Submit, edge alone ≥ 0.85 x null",
        _throughput_vs("edge-submit-fastkinesis", "null-submit", 0.85),
    ),
    Target(
        "Edge-alone CPU per Submit ≤ 1.2 x null",
        _cpu_vs("edge-submit-fastkinesis", "null-submit", 1.2),
    ),
    Target("Keyed Submit CPU ≤ 1.2 x null", _cpu_vs("edge-submit-keyed", "null-submit-keyed", 1.2)),
    Target("Hot Get throughput ≥ 0.9 x null", _throughput_vs("edge-get-hot", "null-get", 0.9)),
    Target("Submit p99 ≤ 25 ms at half saturation", _p99_half("edge-submit", 25.0)),
    Target("Hot Get p99 ≤ 5 ms at half saturation", _p99_half("edge-get-hot", 5.0)),
    Target("10,000 in flight, zero errors (edge)", _clean("edge-inflight-10k")),
    Target("10,000 in flight, zero errors (null)", _clean("null-inflight-10k")),
)


def targets_table(results: Sequence[Result]) -> str:
    by_name = {r["scenario"]: r for r in results}
    lines = ["| target | measured | met |", "|---|---|---|"]
    for target in TARGETS:
        outcome = target.check(by_name)
        if outcome is None:
            lines.append(f"| {target.name} | not measured in this run | - |")
        else:
            measured, met = outcome
            lines.append(f"| {target.name} | {measured} | {'yes' if met else '**NO**'} |")
    return "\n".join(lines)


def plot(results: Sequence[Result], path: Path) -> Path:
    """Left: throughput per scenario; right: latency percentiles at half saturation."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    names = [r["scenario"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = ["#888888" if r["server"] == "null" else "#1f77b4" for r in results]
    left.barh(names, [r["throughput_rps"] for r in results], color=colors)
    left.set_xlabel("requests/s at saturation (one server process, one CPU)")
    left.invert_yaxis()
    left.set_title("Throughput (grey: null server baseline)")
    qs = ("p50", "p90", "p99", "p99.9")
    for r in results:
        lat = r.get("latency_ms_half_saturation")
        if lat:
            right.plot(qs, [lat[q] for q in qs], marker="o", label=r["scenario"])
    right.set_yscale("log")
    right.set_ylabel("ms")
    right.set_title("Latency at half of saturation")
    right.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def performance_md(
    results: Sequence[Result],
    *,
    date: str,
    command: str,
    plot_path: str,
    machine: str,
    notes: Sequence[str],
    findings: str,
) -> str:
    problems = [f"- **{r['scenario']}**: {p}" for r in results for p in r["problems"]]
    commands = [f"- `{r['scenario']}`: `{r['command']}`" for r in results]
    paced = [
        f"- `{r['scenario']}` (half saturation): `{r['paced_command']}`"
        for r in results
        if r.get("paced_command")
    ]
    parts = [
        "# Performance",
        "",
        "Generated by `make bench` (bench/report.py); do not edit the figures by hand. "
        "The findings section at the end is kept from the previous file.",
        "",
        f"Run: {date}, `{command}`. Machine: {machine}.",
        "",
        "Every scenario starts its own server process pinned to its own CPU, loads it with "
        "h2load pinned to the other CPU, and checks every gRPC status (the server's "
        "per-status counters and the DATA bytes received: h2load counts gRPC errors as HTTP "
        "200). Server CPU is the server process tree's utime+stime from /proc over the "
        "saturated run, divided by its requests. The null server is bench/null_server.py: "
        "same process model, same method names and reply sizes, handlers that only return.",
        "",
        *[f"> {n}" for n in notes],
        "",
        "## Targets (measured in this run, against the null server of the same run)",
        "",
        targets_table(results),
        "",
        "## Figures",
        "",
        table(results),
        "",
        f"![throughput and latency]({plot_path})",
        "",
        "Raw results: `bench/results/" + date + "-<scenario>.json`.",
        "",
        "### Problems found by the run",
        "",
        *(problems or ["None."]),
        "",
        "### Commands (h2load, as run)",
        "",
        *commands,
        *paced,
        "",
        FINDINGS_MARK,
        "",
        findings.strip() or "(none yet)",
        "",
    ]
    return "\n".join(parts)


FINDINGS_MARK = "## Findings, profiles and remaining gaps"


def kept_findings(existing: Path) -> str:
    """The hand-written findings section of an existing PERFORMANCE.md."""
    if not existing.exists():
        return ""
    text = existing.read_text()
    _, mark, rest = text.partition(FINDINGS_MARK)
    return rest.strip() if mark else ""
